"""AnnData-facing models: :class:`AE`, :class:`VAE`, :class:`CVAE` and :class:`GMVAE`."""

from ._ae import AE
from ._cvae import CVAE
from ._gmvae import GMVAE
from ._guard import NonFiniteLossError
from ._mixture_start import MixtureStart, leiden_clusters, mixture_start, umap_embedding
from ._safe_load import CorruptModelFileError, UnsafeModelFileError
from ._vae import VAE
from ._validation import infer_likelihood

__all__ = [
    "AE",
    "CVAE",
    "CorruptModelFileError",
    "GMVAE",
    "MixtureStart",
    "NonFiniteLossError",
    "UnsafeModelFileError",
    "VAE",
    "infer_likelihood",
    "leiden_clusters",
    "mixture_start",
    "umap_embedding",
]
