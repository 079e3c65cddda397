"""Shared plumbing for the autoencoder family: covariates, encoder input, decoder, likelihood."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, auto_move_data
from torch.distributions import Distribution

from ._likelihoods import COUNT_LIKELIHOODS, Likelihood, LikelihoodHead
from ._networks import Body, Encoder


class AutoencoderBase(BaseModuleClass):
    """Encoder, decoder and likelihood shared by :class:`AEModule` and :class:`VAEModule`.

    Parameters
    ----------
    n_input
        Number of features.
    n_latent
        Latent dimension.
    n_hidden
        Width of the hidden layers.
    n_layers
        Number of hidden layers in the encoder and in the decoder; ``0`` gives linear maps.
    n_batch
        Number of condition categories (1 when there is no condition).
    n_cats_per_cov
        Number of categories of each extra categorical covariate.
    likelihood
        Observation model, see :class:`~mixvi.module.LikelihoodHead`.
    dropout_rate
        Dropout in the hidden layers.
    use_batch_norm
        Batch normalisation in the hidden layers.
    learn_scale
        For the normal likelihood, learn a per-feature scale (else fixed at 1).
    variational
        Whether the encoder outputs a distribution (VAE) or a point (AE).
    input_dropout_rate
        Fraction of the encoder's input features set to zero, drawn anew for every cell
        and step, while training: the masking noise of a denoising autoencoder, as DEC
        :cite:p:`Xie2016` pretrains. The decoder still reconstructs the uncorrupted input.
    library_target
        Counts only: the encoder sees ``log1p(x / library * library_target)``, each cell
        scaled to this library size as scanpy's ``normalize_total`` and ``log1p`` do, rather
        than ``log1p(x)`` (``None``, as scVI). The decoder still uses the observed library.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        n_batch: int = 1,
        n_cats_per_cov: Sequence[int] | None = None,
        likelihood: Likelihood = "normal",
        dropout_rate: float = 0.1,
        use_batch_norm: bool = True,
        learn_scale: bool = True,
        variational: bool = True,
        input_dropout_rate: float = 0.0,
        library_target: float | None = None,
    ) -> None:
        super().__init__()
        if library_target is not None and not library_target > 0:
            raise ValueError(f"library_target must be None or > 0, got {library_target}.")
        self.library_target = library_target
        if not 0.0 <= input_dropout_rate < 1.0:
            raise ValueError(f"input_dropout_rate must be in [0, 1), got {input_dropout_rate}.")
        self.input_dropout_rate = input_dropout_rate
        self.n_input = n_input
        self.n_latent = n_latent
        self.n_batch = n_batch
        self.likelihood = likelihood
        n_cat_list = [n_batch, *(n_cats_per_cov or [])]
        self.encoder = Encoder(
            n_input,
            n_latent,
            n_cat_list=n_cat_list,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            use_batch_norm=use_batch_norm,
            variational=variational,
        )
        # no dropout in the decoder: it would only add noise to the reconstruction
        self.decoder = Body(n_latent, n_cat_list, n_layers, n_hidden, 0.0, use_batch_norm)
        self.px = LikelihoodHead(
            likelihood,
            self.decoder.n_out,
            n_input,
            n_cat_list if self.decoder.head_cat_list else None,
            learn_scale=learn_scale,
        )

    @property
    def is_count(self) -> bool:
        return self.likelihood in COUNT_LIKELIHOODS

    # -- tensors ---------------------------------------------------------------------------
    @staticmethod
    def _cat_list(
        batch_index: torch.Tensor | None, cat_covs: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        cats: list[torch.Tensor] = []
        if batch_index is not None:
            cats.append(batch_index)
        if cat_covs is not None:
            cats.extend(torch.split(cat_covs, 1, dim=1))
        return tuple(cats)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
            "cat_covs": tensors.get(REGISTRY_KEYS.CAT_COVS_KEY),
        }

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict, **kwargs
    ) -> dict:
        return {
            "z": inference_outputs["z"],
            "library": inference_outputs["library"],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
            "cat_covs": tensors.get(REGISTRY_KEYS.CAT_COVS_KEY),
        }

    def _encoder_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the encoder's input and the observed library size (counts only).

        Counts are log1p-transformed before encoding, as in scVI, so that highly expressed
        features do not dominate the first layer; with ``library_target`` each cell is first
        scaled to that library size, so that sequencing depth, which the decoder is given,
        does not take up latent dimensions. The library size is taken before any input
        dropout, so that the decoder's scale stays that of the observed cell.
        """
        library = x.sum(dim=-1, keepdim=True) if self.is_count else None
        x_in = x
        if self.is_count:
            if self.library_target is not None:
                x = x / library.clamp(min=1.0) * self.library_target
            x_in = torch.log1p(x)
        if self.training and self.input_dropout_rate > 0:
            # plain masking, not rescaled like nn.Dropout: a masked feature reads as
            # "not observed", as in the denoising autoencoders DEC and N2D build on
            x_in = x_in * (torch.rand_like(x_in) >= self.input_dropout_rate)
        return x_in, library

    # -- generative model ------------------------------------------------------------------
    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        library: torch.Tensor | None = None,
        batch_index: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
    ) -> dict[str, Distribution]:
        """Decode ``z`` (shape ``(n, d)`` or ``(S, n, d)``) into p(x|z)."""
        cats = self._cat_list(batch_index, cat_covs)
        h = self.decoder(z, *cats)
        head_cats = cats if self.decoder.head_cat_list else ()
        return {"px": self.px(h, library, *head_cats)}

    @staticmethod
    def reconstruction_loss(x: torch.Tensor, px: Distribution) -> torch.Tensor:
        """-log p(x|z) summed over features, averaged over Monte Carlo draws; shape ``(n,)``."""
        nll = -px.log_prob(x).sum(dim=-1)
        return nll.mean(dim=0) if nll.dim() == 2 else nll
