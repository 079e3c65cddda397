"""The GMVAE's network defaults, which depend on the data it is given.

Counts without a condition get linear maps to a wide latent, as PCA-50 is, from
depth-normalised log counts, as PCA reads, and a mixture start from Leiden on their
principal components, as the scanpy pipeline clusters; everything else
(scaled or log values, images, counts with a condition) gets two hidden layers, a 10-D
latent and a UMAP start (a Gaussian-mixture start after a VAE pretraining). The count
settings were chosen on the weak-marker count simulation of ``benchmarks/count_settings.py``
(development data; its tables say so) and, for the start, by the agreement of the clusters
across seeds on real counts (``benchmarks/start_stability.py``, no labels).
"""

from __future__ import annotations

from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager

from mixvi.module._likelihoods import COUNT_LIKELIHOODS

from ._base import median_library_size

#: hidden layers and latent size of the GMVAE on counts with no condition
COUNT_LAYERS = 0
COUNT_LATENT = 50
#: hidden layers and latent size otherwise
LAYERS = 2
LATENT = 10


def is_conditional(manager: AnnDataManager) -> bool:
    """Whether a registration has a condition or covariates for the decoder to be given."""
    return manager.summary_stats.n_batch > 1 or REGISTRY_KEYS.CAT_COVS_KEY in manager.data_registry


def is_plain_counts(manager: AnnDataManager | None, likelihood: str) -> bool:
    """Whether registered data are counts with no condition: the data the count defaults fit."""
    return manager is not None and likelihood in COUNT_LIKELIHOODS and not is_conditional(manager)


def network_defaults(
    manager: AnnDataManager | None,
    likelihood: str,
    n_layers: int | None,
    n_latent: int | None,
    normalize_input: bool | None = None,
) -> tuple[int, int, float | None]:
    """``n_layers``, ``n_latent`` and the encoder's ``library_target``, resolved for these data.

    ``None`` resolves for counts with no condition to linear maps, a 50-D latent and an
    encoder input scaled to the median library size; otherwise to two hidden layers, a 10-D
    latent and ``log1p`` of the counts (as scVI reads them). A condition needs hidden layers:
    its effect on log counts is not linear, and linear maps leave it in the latent.
    """
    counts = manager is not None and likelihood in COUNT_LIKELIHOODS
    plain_counts = is_plain_counts(manager, likelihood)
    if n_layers is None:
        n_layers = COUNT_LAYERS if plain_counts else LAYERS
    if n_latent is None:
        n_latent = COUNT_LATENT if plain_counts else LATENT
    if normalize_input is None:
        normalize_input = plain_counts
    if normalize_input and not counts:
        raise ValueError(
            "normalize_input=True needs a count likelihood ('nb', 'zinb' or 'poisson') and "
            f"registered data, got likelihood={likelihood!r}."
        )
    library_target = median_library_size(manager) if normalize_input else None
    return n_layers, n_latent, library_target


def default_start(manager: AnnDataManager | None, likelihood: str, mode: str) -> str:
    """The mixture start that ``init="auto"`` takes after a ``mode`` pretraining.

    A VAE pretraining already shapes the latent as Gaussian blobs, so a Gaussian mixture
    fits it (``"gmm"``). After an autoencoder pretraining, counts with no condition start
    from Leiden on the neighbour graph of PCA-50 of the encoder's input (``"pca"``), which
    does not change with the pretraining's seed: on real counts its clusters agreed far
    more across seeds than those of Leiden on the latent, which agreed more than the UMAP
    start's; anything else starts from a UMAP of the latent (``"umap"``).
    """
    if mode == "vae":
        return "gmm"
    return "pca" if is_plain_counts(manager, likelihood) else "umap"


def pretraining_mode(manager: AnnDataManager, pretraining: str) -> str:
    """The pretraining ``"auto"`` takes: a VAE with a condition or covariates, else an AE.

    An autoencoder keeps in its latent what its decoder is also told, so a mixture started
    there would cluster by condition; a conditional VAE's KL pushes the condition out.
    """
    if pretraining not in ("auto", "ae", "vae"):
        raise ValueError(f"pretraining must be 'auto', 'ae' or 'vae', got {pretraining!r}.")
    if pretraining != "auto":
        return pretraining
    return "vae" if is_conditional(manager) else "ae"
