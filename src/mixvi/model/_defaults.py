"""The GMVAE's network defaults, which depend on the data it is given.

Counts without a condition get linear maps to a wide latent, as PCA-50 is; everything else
(scaled or log values, images, counts with a condition) gets two hidden layers and a 10-D
latent. Both count settings were chosen on the weak-marker count simulation of
``benchmarks/count_settings.py`` (development data; its tables say so).
"""

from __future__ import annotations

from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager

from mixvi.module._likelihoods import COUNT_LIKELIHOODS

#: hidden layers and latent size of the GMVAE on counts with no condition
COUNT_LAYERS = 0
COUNT_LATENT = 50
#: hidden layers and latent size otherwise
LAYERS = 2
LATENT = 10


def is_conditional(manager: AnnDataManager) -> bool:
    """Whether a registration has a condition or covariates for the decoder to be given."""
    return manager.summary_stats.n_batch > 1 or REGISTRY_KEYS.CAT_COVS_KEY in manager.data_registry


def network_defaults(
    manager: AnnDataManager | None, likelihood: str, n_layers: int | None, n_latent: int | None
) -> tuple[int, int]:
    """``n_layers`` and ``n_latent``, with ``None`` resolved for these data.

    A condition needs hidden layers: its effect on log counts is not linear, and linear maps
    leave it in the latent.
    """
    plain_counts = (
        manager is not None and likelihood in COUNT_LIKELIHOODS and not is_conditional(manager)
    )
    if n_layers is None:
        n_layers = COUNT_LAYERS if plain_counts else LAYERS
    if n_latent is None:
        n_latent = COUNT_LATENT if plain_counts else LATENT
    return n_layers, n_latent
