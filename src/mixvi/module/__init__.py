"""Torch modules: the maths of the autoencoder family, with no AnnData in sight."""

from ._ae import AEModule
from ._base import AutoencoderBase
from ._gmvae import GMVAEModule
from ._likelihoods import COUNT_LIKELIHOODS, LIKELIHOODS, LikelihoodHead
from ._networks import Body, Encoder
from ._vae import VAEModule

__all__ = [
    "AEModule",
    "AutoencoderBase",
    "Body",
    "COUNT_LIKELIHOODS",
    "Encoder",
    "GMVAEModule",
    "LIKELIHOODS",
    "LikelihoodHead",
    "VAEModule",
]
