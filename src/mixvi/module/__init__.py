"""Torch modules: the maths of the autoencoder family, with no AnnData in sight.

Distributions are built with ``validate_args=False``. torch's argument checks end in
``.all()`` on device tensors, which makes the host wait for the GPU several times per
step. The data are checked once, when they are registered (``mixvi.model._validation``),
and a non-finite loss is caught by the training guard (``mixvi.model._guard``).
"""

from ._ae import AEModule
from ._base import AutoencoderBase
from ._gmvae import GMVAEModule
from ._likelihoods import COUNT_LIKELIHOODS, LIKELIHOODS, LikelihoodHead
from ._networks import Body, Encoder
from ._prior import MixturePrior
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
    "MixturePrior",
    "VAEModule",
]
