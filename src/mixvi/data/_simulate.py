"""Simulated single-cell counts with known cell types and conditions.

No real scRNA-seq count data ship offline, so the tests and the benchmark simulate them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData


def simulate_counts(
    n_cells: int = 1_200,
    n_genes: int = 300,
    n_types: int = 4,
    n_conditions: int = 2,
    proportions: Sequence[float] | None = None,
    marker_fraction: float = 0.2,
    marker_lfc: float = 1.5,
    condition_sd: float = 1.0,
    library_mean: float = 2_000.0,
    library_sd: float = 0.3,
    dispersion: float = 10.0,
    seed: int = 0,
) -> AnnData:
    """Negative-binomial counts of cell types under conditions that shift every gene.

    The generative model, per gene g, cell type t and condition c:

    - a baseline log expression ``b_g ~ N(0, 1)``;
    - each type changes a random ``marker_fraction`` of the genes by a log fold change
      ``N(0, marker_lfc²)``;
    - each condition multiplies every gene by its own log-normal factor
      ``exp(N(0, condition_sd²))``, as a batch or a treatment that touches the whole
      transcriptome does;
    - each cell's library size is log-normal around ``library_mean`` (log-scale sd
      ``library_sd``), and its counts are NB with mean ``library × softmax_g(log rates)``
      and inverse dispersion ``dispersion``.

    Types and conditions are drawn independently, so every type appears in every condition.

    Parameters
    ----------
    n_cells, n_genes
        Shape of the count matrix.
    n_types
        Number of cell types.
    n_conditions
        Number of conditions (``1`` gives none to remove).
    proportions
        Type proportions (normalised here); equal by default.
    marker_fraction
        Fraction of genes whose expression differs per type.
    marker_lfc
        Standard deviation of the types' log fold changes.
    condition_sd
        Standard deviation of each condition's per-gene log factor.
    library_mean, library_sd
        Library size: geometric mean and log-scale standard deviation.
    dispersion
        NB inverse dispersion θ (variance μ + μ²/θ).
    seed
        Random seed.

    Returns
    -------
    AnnData ``n_cells × n_genes`` with integer counts in ``X`` and ``layers["counts"]``,
    categorical ``obs["cell_type"]`` (``type_0``, ...) and ``obs["condition"]``
    (``condition_0``, ...), and the simulation's settings in ``uns["simulation"]``.

    Examples
    --------
    >>> adata = mixvi.data.simulate_counts(n_types=5, n_conditions=3, proportions=[35, 25, 20, 12, 8])
    >>> mixvi.model.GMVAE.setup_anndata(adata, layer="counts", condition_key="condition")
    """
    if n_types < 1 or n_conditions < 1 or n_cells < 1 or n_genes < 1:
        raise ValueError("n_cells, n_genes, n_types and n_conditions must all be >= 1.")
    rng = np.random.default_rng(seed)
    p = (
        np.full(n_types, 1.0 / n_types)
        if proportions is None
        else np.asarray(proportions, dtype=float)
    )
    if p.shape != (n_types,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(
            f"proportions must be {n_types} non-negative numbers, got {proportions!r}."
        )
    p = p / p.sum()
    types = rng.choice(n_types, size=n_cells, p=p)
    conditions = rng.integers(0, n_conditions, size=n_cells)

    baseline = rng.normal(0.0, 1.0, n_genes)
    type_lfc = np.zeros((n_types, n_genes))
    n_markers = max(1, int(round(marker_fraction * n_genes)))
    for t in range(n_types):
        markers = rng.choice(n_genes, size=n_markers, replace=False)
        type_lfc[t, markers] = rng.normal(0.0, marker_lfc, n_markers)
    condition_lfc = rng.normal(0.0, condition_sd, (n_conditions, n_genes))

    log_rate = baseline + type_lfc[types] + condition_lfc[conditions]
    share = np.exp(log_rate - log_rate.max(axis=1, keepdims=True))
    share /= share.sum(axis=1, keepdims=True)
    library = np.exp(rng.normal(np.log(library_mean), library_sd, n_cells))
    mean = library[:, None] * share
    # NB as a gamma-Poisson mixture: rate ~ Gamma(θ, μ/θ)
    counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)

    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(
                [f"type_{t}" for t in types], categories=[f"type_{t}" for t in range(n_types)]
            ),
            "condition": pd.Categorical(
                [f"condition_{c}" for c in conditions],
                categories=[f"condition_{c}" for c in range(n_conditions)],
            ),
        },
        index=[f"cell_{i}" for i in range(n_cells)],
    )
    adata = AnnData(counts, obs=obs)
    adata.var_names = [f"gene_{g}" for g in range(n_genes)]
    adata.layers["counts"] = adata.X.copy()
    adata.uns["simulation"] = {
        "n_types": n_types,
        "n_conditions": n_conditions,
        "proportions": p.tolist(),
        "marker_fraction": marker_fraction,
        "marker_lfc": marker_lfc,
        "condition_sd": condition_sd,
        "library_mean": library_mean,
        "library_sd": library_sd,
        "dispersion": dispersion,
        "seed": seed,
    }
    return adata
