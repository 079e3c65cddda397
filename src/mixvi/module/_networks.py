"""Encoder and decoder bodies assembled from :class:`scvi.nn.FCLayers`.

Covariates (the condition and any extra categorical covariates) enter as one-hot
vectors through ``FCLayers``' ``n_cat_list``. With ``n_layers=0`` there is no hidden
layer and no activation: the network is a single affine map, which is what makes the
linear autoencoder span the principal subspace.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scvi.nn import FCLayers
from torch import nn
from torch.distributions import Normal


def affine(n_in: int, n_out: int, n_cat_list: Sequence[int] | None = None) -> FCLayers:
    """An affine map that also takes one-hot covariates (no norm, activation or dropout)."""
    return FCLayers(
        n_in=n_in,
        n_out=n_out,
        n_cat_list=list(n_cat_list) if n_cat_list else None,
        n_layers=1,
        use_batch_norm=False,
        use_activation=False,
        dropout_rate=0.0,
    )


class Body(nn.Module):
    """Hidden layers of an encoder or decoder, or nothing for a linear network.

    Parameters
    ----------
    n_in
        Input width.
    n_cat_list
        Number of categories of each categorical covariate, injected one-hot.
    n_layers
        Number of hidden layers; ``0`` means no hidden layer (identity).
    n_hidden
        Width of each hidden layer.
    dropout_rate
        Dropout after each hidden layer.
    use_batch_norm
        Batch normalisation in the hidden layers.
    """

    def __init__(
        self,
        n_in: int,
        n_cat_list: Sequence[int] | None,
        n_layers: int,
        n_hidden: int,
        dropout_rate: float,
        use_batch_norm: bool,
    ) -> None:
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}.")
        self.n_layers = n_layers
        self.n_out = n_hidden if n_layers > 0 else n_in
        self.fc = (
            FCLayers(
                n_in=n_in,
                n_out=n_hidden,
                n_cat_list=list(n_cat_list) if n_cat_list else None,
                n_layers=n_layers,
                n_hidden=n_hidden,
                dropout_rate=dropout_rate,
                use_batch_norm=use_batch_norm,
                inject_covariates=True,
            )
            if n_layers > 0
            else None
        )

    @property
    def head_cat_list(self) -> bool:
        """Whether the output heads must take the covariates (no hidden layer took them)."""
        return self.fc is None

    def forward(self, x: torch.Tensor, *cat_list: torch.Tensor) -> torch.Tensor:
        if self.fc is None:
            return x
        return self.fc(x, *cat_list)


class Encoder(nn.Module):
    """Encoder q(z|x): a body followed by a mean head and, if variational, a log-variance head.

    The log-variance parameterisation keeps the variance positive without a
    constrained optimisation, and a small floor ``var_eps`` keeps it away from zero.

    Parameters
    ----------
    n_input
        Number of features.
    n_latent
        Latent dimension.
    n_cat_list
        Number of categories of each categorical covariate.
    n_layers, n_hidden, dropout_rate, use_batch_norm
        See :class:`Body`.
    variational
        If ``False`` (autoencoder), only the mean head exists and ``forward`` returns ``z``.
    var_eps
        Minimum variance of q(z|x).
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_cat_list: Sequence[int] | None = None,
        n_layers: int = 1,
        n_hidden: int = 128,
        dropout_rate: float = 0.1,
        use_batch_norm: bool = True,
        variational: bool = True,
        var_eps: float = 1e-4,
    ) -> None:
        super().__init__()
        self.body = Body(n_input, n_cat_list, n_layers, n_hidden, dropout_rate, use_batch_norm)
        head_cats = n_cat_list if self.body.head_cat_list else None
        self.mean = affine(self.body.n_out, n_latent, head_cats)
        self.log_var = affine(self.body.n_out, n_latent, head_cats) if variational else None
        self.var_eps = var_eps

    def forward(self, x: torch.Tensor, *cat_list: torch.Tensor) -> Normal | torch.Tensor:
        """Return q(z|x) as a :class:`~torch.distributions.Normal`, or ``z`` for an autoencoder."""
        h = self.body(x, *cat_list)
        head_cats = cat_list if self.body.head_cat_list else ()
        mean = self.mean(h, *head_cats)
        if self.log_var is None:
            return mean
        var = torch.exp(self.log_var(h, *head_cats)) + self.var_eps
        return Normal(mean, var.sqrt(), validate_args=False)
