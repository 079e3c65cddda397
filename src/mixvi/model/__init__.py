"""AnnData-facing models: :class:`AE`, :class:`VAE` and :class:`CVAE`."""

from ._ae import AE
from ._cvae import CVAE
from ._vae import VAE
from ._validation import infer_likelihood

__all__ = ["AE", "CVAE", "VAE", "infer_likelihood"]
