"""The deterministic autoencoder model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from anndata import AnnData

from mixvi.module import AEModule
from mixvi.module._likelihoods import Likelihood

from ._base import MixviModel


class AE(MixviModel):
    """Deterministic autoencoder on AnnData.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Latent dimension.
    n_hidden
        Width of the hidden layers.
    n_layers
        Hidden layers in the encoder and in the decoder.
    likelihood
        ``"normal"``, ``"bernoulli"``, ``"nb"``, ``"zinb"`` or ``"poisson"``; the loss is
        -log p(x|z).
    linear
        No hidden layer and no activation (``n_layers`` is ignored): encoder and decoder
        are affine maps. With ``likelihood="normal"`` and ``learn_scale=False`` on centred
        data, the decoder's columns then span the top ``n_latent`` principal components.
    dropout_rate
        Dropout in the encoder's hidden layers.
    use_batch_norm
        Batch normalisation in the hidden layers.
    learn_scale
        For the normal likelihood: learn a per-feature scale. ``False`` gives the squared
        error loss.
    input_dropout_rate
        Fraction of input features masked to zero for the encoder while training
        (denoising, see :class:`~mixvi.module.AutoencoderBase`); ``0`` turns it off.

    Examples
    --------
    >>> import mixvi, scanpy as sc
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> mixvi.model.AE.setup_anndata(adata)
    >>> model = mixvi.model.AE(adata, n_latent=10)
    >>> model.train(max_epochs=50)
    >>> model.write_results(adata)  # adata.obsm["X_ae"]
    """

    _module_cls = AEModule
    _latent_key = "X_ae"

    def __init__(
        self,
        adata: AnnData | None = None,
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        likelihood: Likelihood = "normal",
        linear: bool = False,
        dropout_rate: float = 0.1,
        use_batch_norm: bool = True,
        learn_scale: bool = True,
        input_dropout_rate: float = 0.0,
    ) -> None:
        super().__init__(
            adata,
            likelihood=likelihood,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=0 if linear else n_layers,
            dropout_rate=dropout_rate,
            use_batch_norm=use_batch_norm,
            learn_scale=learn_scale,
            input_dropout_rate=input_dropout_rate,
        )
        self.init_params_ = self._get_init_params(locals())

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """The code z = ψ(x) of each observation, shape ``(n_obs, n_latent)``.

        Parameters
        ----------
        adata
            AnnData with the same features as the training data (default: the training AnnData).
        indices
            Indices of the observations to use (default: all).
        batch_size
            Minibatch size (default: 1024).
        """
        return self._map_minibatches(lambda _, out: out["z"], adata, indices, batch_size)

    @torch.inference_mode()
    def get_reconstruction_error(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> float:
        """Mean -log p(x|z) per observation (summed over features).

        Parameters
        ----------
        adata
            AnnData with the same features as the training data (default: the training AnnData).
        indices
            Indices of the observations to use (default: all).
        batch_size
            Minibatch size (default: 1024).
        """
        from scvi.model.base._log_likelihood import compute_reconstruction_error

        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        return float(compute_reconstruction_error(self.module, loader)["reconstruction_loss"])
