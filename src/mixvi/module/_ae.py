"""Deterministic autoencoder module."""

from __future__ import annotations

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput, auto_move_data

from ._base import AutoencoderBase


class AEModule(AutoencoderBase):
    """Autoencoder x -> z = ψ(x) -> p(x|φ(z)), trained on -log p(x|z).

    With ``n_layers=0`` both maps are affine; trained with the normal likelihood at a fixed
    scale on centred data, the decoder's columns span the top principal subspace.
    All parameters are those of :class:`~mixvi.module.AutoencoderBase`.

    Parameters
    ----------
    n_input
        Number of features.
    **kwargs
        See :class:`~mixvi.module.AutoencoderBase`.
    """

    def __init__(self, n_input: int, **kwargs) -> None:
        super().__init__(n_input, variational=False, **kwargs)

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | None]:
        x_in, library = self._encoder_input(x)
        z = self.encoder(x_in, *self._cat_list(batch_index, cat_covs))
        return {"z": z, "library": library}

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        kl_weight: float = 1.0,
    ) -> LossOutput:
        rec = self.reconstruction_loss(tensors[REGISTRY_KEYS.X_KEY], generative_outputs["px"])
        return LossOutput(loss=rec.mean(), reconstruction_loss=rec, kl_local=torch.zeros_like(rec))
