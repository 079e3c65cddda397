"""Choosing the number of mixture components K without labels.

The held-out ELBO barely moves with K, because the decoder makes up for a coarse prior, so
it cannot choose. What K should describe is the aggregate posterior q(z) = mean over cells
of q(z|x): the distribution that the GMVAE's mixture prior has to match. Here q(z) is
represented by draws z ~ q(z|x) from a VAE pretraining (whose posterior variances are
trained), a diagonal Gaussian mixture is fitted to them for each candidate K, and the K
with the lowest BIC is chosen. BIC's penalty counts the cells, not the draws, since the
draws of one cell are not independent observations. Fitting the posterior means alone
ignores how uncertain each cell's position is, and BIC then keeps splitting (on simulated
counts with 3, 5 and 8 types it chose 8 to 11 components; on the draws, the true number).
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


def aggregate_posterior_bic(
    mean: np.ndarray,
    var: np.ndarray,
    candidates: Sequence[int],
    n_draws: int = 10,
    restarts: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """BIC of a diagonal Gaussian mixture on draws from the aggregate posterior, per candidate K.

    Parameters
    ----------
    mean, var
        Posterior means and variances of q(z|x), shape ``(n_cells, n_latent)``.
    candidates
        The values of K.
    n_draws
        Draws of z per cell.
    restarts
        ``n_init`` of each GaussianMixture. Few restarts make the choice fragile: with 3, the
        fit at the true K (8 simulated types) could stop in a local optimum whose BIC lost to
        K + 1 on one machine and not on another; with 10 it found the better optimum.
    seed
        Seed of the draws and the fits.

    Returns
    -------
    One row per K (the index), with ``bic`` (lower is better, per cell) and ``chosen``
    (``True`` for the K with the lowest BIC).
    """
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    n_cells, n_latent = mean.shape
    draws = np.concatenate(
        [mean + np.sqrt(var) * rng.standard_normal(mean.shape) for _ in range(n_draws)]
    )
    rows = []
    for k in candidates:
        gmm = GaussianMixture(
            k, covariance_type="diag", n_init=restarts, reg_covar=1e-4, random_state=seed
        ).fit(draws)
        n_parameters = 2 * k * n_latent + k - 1
        bic = -2 * n_cells * gmm.score(draws) + n_parameters * np.log(n_cells)
        rows.append({"n_components": int(k), "bic": float(bic / n_cells)})
    table = pd.DataFrame(rows).set_index("n_components")
    table["chosen"] = table.index == table["bic"].idxmin()
    return table
