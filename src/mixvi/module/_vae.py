"""Variational autoencoder module with a standard normal prior and optional covariates."""

from __future__ import annotations

import math

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput, auto_move_data
from torch.distributions import Normal

from ._base import AutoencoderBase


class VAEModule(AutoencoderBase):
    """VAE with mean-field Gaussian q(z|x) and p(z) = N(0, I).

    The loss is minus the ELBO, averaged over the minibatch::

        -ELBO(x) = -1/S Σ_s log p(x|z_s) + KL(q(z|x) || p(z)),   z_s ~ q(z|x)

    with ``S = n_samples`` reparameterised draws per cell and the KL in closed form.
    Condition covariates (``n_batch > 1``) go one-hot into encoder and decoder, which
    makes this the conditional VAE.

    Parameters
    ----------
    n_input
        Number of features.
    n_samples
        Monte Carlo draws of z per cell for the reconstruction term during training.
    **kwargs
        See :class:`~mixvi.module.AutoencoderBase`.
    """

    def __init__(self, n_input: int, n_samples: int = 1, **kwargs) -> None:
        super().__init__(n_input, variational=True, **kwargs)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
        self.n_samples = n_samples

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        n_samples: int | None = None,
    ) -> dict:
        """Encode ``x`` into q(z|x) and draw ``n_samples`` reparameterised z.

        Returns ``qz`` (a :class:`~torch.distributions.Normal`), ``z`` of shape ``(n, d)``
        for one draw or ``(S, n, d)`` for several, and the observed ``library``.
        """
        n_samples = self.n_samples if n_samples is None else n_samples
        x_in, library = self._encoder_input(x)
        qz = self.encoder(x_in, *self._cat_list(batch_index, cat_covs))
        z = qz.rsample() if n_samples == 1 else qz.rsample((n_samples,))
        return {"qz": qz, "z": z, "library": library}

    # -- prior -----------------------------------------------------------------------------
    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """Log p(z), summed over latent dimensions.

        Parameters
        ----------
        z
            Latent points, shape ``(..., n_latent)``.
        """
        return (
            Normal(torch.zeros_like(z), torch.ones_like(z), validate_args=False)
            .log_prob(z)
            .sum(dim=-1)
        )

    def kl_local(self, inference_outputs: dict, tensors: dict | None = None) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per cell, in closed form (``tensors``: the minibatch, unused here).

        Written out rather than dispatched through :func:`torch.distributions.kl_divergence`,
        whose lookup table ``torch.compile`` cannot trace (a graph break in every step).
        """
        qz = inference_outputs["qz"]
        return (0.5 * (qz.scale**2 + qz.loc**2 - 1) - torch.log(qz.scale)).sum(dim=-1)

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        kl_weight: float = 1.0,
    ) -> LossOutput:
        rec = self.reconstruction_loss(tensors[REGISTRY_KEYS.X_KEY], generative_outputs["px"])
        kl = self.kl_local(inference_outputs, tensors)
        return LossOutput(loss=(rec + kl_weight * kl).mean(), reconstruction_loss=rec, kl_local=kl)

    @torch.inference_mode()
    def marginal_ll(
        self,
        tensors: dict[str, torch.Tensor],
        n_mc_samples: int,
        return_mean: bool = False,
        n_mc_samples_per_pass: int = 100,
    ) -> torch.Tensor | float:
        """Importance-sampled log p(x) with q(z|x) as proposal.

        ``log p(x) ≈ logsumexp_s [log p(x|z_s) + log p(z_s) - log q(z_s|x)] - log S``.

        Parameters
        ----------
        tensors
            A minibatch as produced by scvi-tools' data loaders.
        n_mc_samples
            Importance samples per observation.
        return_mean
            Return the mean over observations instead of one value per observation.
        n_mc_samples_per_pass
            Samples drawn at once (bounds memory).
        """
        inputs = self._get_inference_input(tensors)
        x = inputs["x"]
        outputs = self.inference(**inputs, n_samples=1)
        qz, library = outputs["qz"], outputs["library"]
        log_w = []
        remaining = n_mc_samples
        while remaining > 0:
            k = min(n_mc_samples_per_pass, remaining)
            remaining -= k
            z = qz.sample((k,))
            px = self.generative(z, library, inputs["batch_index"], inputs["cat_covs"])["px"]
            log_w.append(px.log_prob(x).sum(-1) + self.log_prior(z) - qz.log_prob(z).sum(-1))
        ll = torch.logsumexp(torch.cat(log_w, dim=0), dim=0) - math.log(n_mc_samples)
        return ll.mean().item() if return_mean else ll.cpu()
