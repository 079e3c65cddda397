"""Choosing the number of mixture components K without labels.

The held-out ELBO barely moves with K, because the decoder makes up for a coarse prior, so
it cannot choose. What K should count are the groups of cells that lie apart in the latent
space of a VAE pretraining. Each candidate K gets one partition of the cells: a
full-covariance Gaussian mixture with K components on a 2-D UMAP of the posterior means
(as the GMVAE's ``init="umap"`` start clusters, and as N2D does). The partition is scored
by its silhouette twice:

- in the UMAP, where curved clusters (digits written in several ways) become compact, so
  that a mixture does not need several components for one of them;
- in the latent itself, where UMAP's tears do not count: a cluster that UMAP cuts in two
  stays one there, and two clusters that UMAP glues are still apart.

Each silhouette is divided by its best over the candidates, and the chosen K has the best
worse view (the highest minimum of the two). A K wins only where both views agree that its
clusters are separated. Every Gaussian-mixture criterion tried before (BIC on posterior
draws or on means, BIC/ICL on the UMAP, stability across subsamples) split or merged the
clusters of images; their choices are tabled in the user guide.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def check_candidates(candidates: Sequence[int], n_obs: int) -> list[int]:
    """The candidate K as a list of ints, or a ``ValueError`` saying what is wrong with them."""
    if isinstance(candidates, int | np.integer) or isinstance(candidates, str):
        raise ValueError(f"n_components must be a list of candidate K, got {candidates!r}.")
    ks = [int(k) for k in candidates]
    if not ks:
        raise ValueError("n_components is empty: give at least one candidate K.")
    if min(ks) < 1:
        raise ValueError(f"Every candidate K must be >= 1, got {sorted(k for k in ks if k < 1)}.")
    too_many = sorted(k for k in ks if k > n_obs)
    if too_many:
        raise ValueError(f"Candidate K {too_many} exceed the number of cells ({n_obs}).")
    duplicates = sorted({k for k in ks if ks.count(k) > 1})
    if duplicates:
        raise ValueError(f"Candidate K {duplicates} appear more than once.")
    return ks


def k_range_candidates(low: int, high: int, n_obs: int, given: str) -> list[int]:
    """The candidates ``low..high`` (the top capped at ``n_obs``), checked; ``given`` names
    the argument as the caller spells it, for the error."""
    low, high = int(low), int(high)
    if low < 1 or high < low:
        raise ValueError(f"{given}: needs 1 <= smallest <= largest.")
    return list(range(low, min(high, n_obs) + 1))


def chosen_k(table: pd.DataFrame) -> int:
    """The K that :func:`separation_scores`' table marks ``chosen``."""
    return int(table.index[table["chosen"]][0])


def worse_view(*silhouettes: np.ndarray) -> np.ndarray:
    """Per candidate, the smallest of its silhouettes, each divided by that view's best.

    A silhouette is NaN where it is undefined (K = 1, or a partition with one cluster), and
    so is the score. A view whose best silhouette is not positive has no separated
    clusters at all; it is divided by the absolute value of its best, which keeps the order
    of its candidates (the least bad stays highest).
    """
    views = []
    for s in silhouettes:
        s = np.asarray(s, dtype=float)
        best = np.nanmax(s) if np.isfinite(s).any() else np.nan
        views.append(s / abs(best) if best and np.isfinite(best) else s)
    return np.min(views, axis=0)


def separation_scores(
    mean: np.ndarray,
    candidates: Sequence[int],
    seed: int = 0,
    n_neighbors: int = 30,
    restarts: int = 3,
    sample_size: int = 5_000,
) -> pd.DataFrame:
    """Silhouettes of a mixture's clusters on a UMAP of the latent, per candidate K.

    Parameters
    ----------
    mean
        Posterior means of q(z|x), shape ``(n_cells, n_latent)``.
    candidates
        The values of K.
    seed
        Seed of the UMAP, the mixtures and the silhouettes' subsample.
    n_neighbors
        ``n_neighbors`` of the 2-D UMAP (``min_dist`` 0, for tight clusters).
    restarts
        ``n_init`` of each GaussianMixture.
    sample_size
        Cells on which the silhouettes are computed (all of them up to this number): a
        silhouette costs the square of the cells.

    Returns
    -------
    One row per K (the index), with ``silhouette_umap``, ``silhouette_latent`` (both of the
    same partition; NaN for K = 1, which has no second cluster to be apart from),
    ``score`` (:func:`worse_view` of the two) and ``chosen`` (``True`` for the highest
    score; a single candidate is chosen whatever its score).
    """
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture

    from ._gmvae import _umap_embedding

    embedding = _umap_embedding(mean, seed, n_neighbors, n_dims=2)
    sample = slice(None)  # every cell, or a subsample fixed for every K
    if mean.shape[0] > sample_size:
        sample = np.random.default_rng(seed).choice(mean.shape[0], sample_size, replace=False)
    views = {"silhouette_umap": embedding[sample], "silhouette_latent": mean[sample]}
    rows = []
    for k in candidates:
        labels = GaussianMixture(
            k, covariance_type="full", n_init=restarts, reg_covar=1e-4, random_state=seed
        ).fit_predict(embedding)[sample]
        row = {"n_components": int(k), **dict.fromkeys(views, np.nan)}
        if len(np.unique(labels)) > 1:
            row |= {name: float(silhouette_score(x, labels)) for name, x in views.items()}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("n_components")
    table["score"] = worse_view(table["silhouette_umap"], table["silhouette_latent"])
    if table["score"].notna().any():
        best = table["score"].idxmax()
    else:
        best = table.index[0]
    table["chosen"] = table.index == best
    return table
