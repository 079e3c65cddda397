"""Gaussian-mixture VAE module (VaDE-style mixture prior)."""

from __future__ import annotations

import numpy as np
import torch
from scvi import REGISTRY_KEYS
from torch import nn

from ._vae import VAEModule


class GMVAEModule(VAEModule):
    """VAE whose prior is a Gaussian mixture: p(z) = Σ_c π_c N(z; μ_c, diag σ_c²).

    π = softmax(logits), μ and log σ² are all learnable. The cluster posterior is the
    responsibility q(c|x) = γ = p(c|z) under the prior, and the per-cell KL is::

        KL = Σ_c γ_c KL(q(z|x) || N(μ_c, σ_c²)) + KL(γ || π)

    with each Gaussian KL in closed form, all in log space (logsumexp) for stability.
    ``pretraining`` switches the loss for the pretraining phase: ``"ae"`` (or ``True``) is
    the reconstruction of the posterior mean alone, i.e. an autoencoder, as VaDE
    pretrains; ``"vae"`` is the ELBO with the standard normal prior, i.e. a (conditional)
    VAE. A VAE's KL gives the encoder a reason to leave out of z what the decoder is
    told anyway (the condition), which an autoencoder lacks.

    While ``anchor_log_gamma`` (``(n_obs, K)`` log-probabilities) is set, q(c|x) is that
    fixed distribution, looked up by each cell's row index, instead of p(c|z). Any q(c|x)
    gives a lower bound on log p(x), so this is still minus an ELBO; it lets an initial
    clustering shape the latent space before the responsibilities take over.

    Batch-norm statistics are learned during pretraining only: outside it, ``train()``
    leaves the batch-norm layers in eval mode (see :meth:`train`).

    Parameters
    ----------
    n_input
        Number of features.
    n_components
        Number of mixture components K.
    **kwargs
        See :class:`~mixvi.module.VAEModule`.
    """

    def __init__(self, n_input: int, n_components: int = 10, **kwargs) -> None:
        super().__init__(n_input, **kwargs)
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}.")
        self.n_components = n_components
        self.prior_logits = nn.Parameter(torch.zeros(n_components))
        self.prior_means = nn.Parameter(torch.randn(n_components, self.n_latent))
        self.prior_log_var = nn.Parameter(torch.zeros(n_components, self.n_latent))
        self.pretraining: bool | str = False
        self.anchor_log_gamma: torch.Tensor | None = None

    def train(self, mode: bool = True) -> GMVAEModule:
        """Set training mode, with batch norm frozen unless pretraining.

        The mixture is fitted to latent means computed with the running batch-norm
        statistics; letting minibatch statistics move the encoder after that shifts every
        cell against the fitted components. On five separated blobs, training the mixture
        with live batch norm gave a worse ELBO with 5 components than with 1.

        Parameters
        ----------
        mode
            ``True`` for training mode, ``False`` for eval mode (as in :meth:`torch.nn.Module.train`).
        """
        super().train(mode)
        if mode and not self.pretraining:
            for layer in self.modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.eval()
        return self

    @torch.no_grad()
    def set_prior(self, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> None:
        """Set π, μ and σ² (e.g. from a fitted ``GaussianMixture``).

        Parameters
        ----------
        weights
            Mixture weights π, shape ``(K,)`` (normalised here).
        means
            Component means, shape ``(K, n_latent)``.
        variances
            Component variances σ², shape ``(K, n_latent)``.
        """
        device = self.prior_means.device
        weights = np.clip(np.asarray(weights, dtype=np.float64), 1e-8, None)
        self.prior_logits.copy_(torch.as_tensor(np.log(weights / weights.sum()), device=device))
        self.prior_means.copy_(torch.as_tensor(means, device=device))
        self.prior_log_var.copy_(torch.as_tensor(np.log(variances), device=device))

    def log_weights(self) -> torch.Tensor:
        """log π, shape ``(K,)``."""
        return torch.log_softmax(self.prior_logits, dim=-1)

    def log_pz_given_c(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; μ_c, σ_c²) for every component, shape ``(..., K)``.

        Parameters
        ----------
        z
            Latent points, shape ``(..., n_latent)``.
        """
        z = z.unsqueeze(-2)
        var = torch.exp(self.prior_log_var)
        return -0.5 * (
            np.log(2 * np.pi) + self.prior_log_var + (z - self.prior_means) ** 2 / var
        ).sum(-1)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = logsumexp_c [log π_c + log N(z; μ_c, σ_c²)].

        Parameters
        ----------
        z
            Latent points, shape ``(..., n_latent)``.
        """
        return torch.logsumexp(self.log_weights() + self.log_pz_given_c(z), dim=-1)

    def responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """γ = p(c|z), shape ``(..., K)``; rows sum to 1.

        Parameters
        ----------
        z
            Latent points, shape ``(..., n_latent)``.
        """
        return torch.softmax(self.log_weights() + self.log_pz_given_c(z), dim=-1)

    @property
    def _pretraining_as_ae(self) -> bool:
        return self.pretraining is True or self.pretraining == "ae"

    def inference(self, *args, **kwargs) -> dict:
        outputs = super().inference(*args, **kwargs)
        if self._pretraining_as_ae:
            outputs["z"] = outputs["qz"].loc
        return outputs

    def kl_local(self, inference_outputs: dict, tensors: dict | None = None) -> torch.Tensor:
        if self._pretraining_as_ae:
            return torch.zeros_like(inference_outputs["qz"].loc[..., 0])
        if self.pretraining == "vae":
            return super().kl_local(inference_outputs, tensors)  # KL to N(0, I)
        qz = inference_outputs["qz"]
        z = inference_outputs["z"]
        if self.anchor_log_gamma is not None:
            if tensors is None or REGISTRY_KEYS.INDICES_KEY not in tensors:
                raise RuntimeError(
                    "anchor_log_gamma needs row indices in the minibatch (set up with row_index)."
                )
            rows = (
                tensors[REGISTRY_KEYS.INDICES_KEY].long().ravel().to(self.anchor_log_gamma.device)
            )
            log_gamma = self.anchor_log_gamma[rows].to(qz.loc.device)
        else:
            log_gamma = torch.log_softmax(self.log_weights() + self.log_pz_given_c(z), dim=-1)
            if log_gamma.dim() == 3:  # several Monte Carlo draws: average the responsibilities
                log_gamma = torch.logsumexp(log_gamma, dim=0) - np.log(log_gamma.shape[0])
        gamma = log_gamma.exp()
        q_mean = qz.loc.unsqueeze(-2)  # (n, 1, d)
        q_var = qz.scale.unsqueeze(-2) ** 2
        p_var = torch.exp(self.prior_log_var)  # (K, d)
        kl_components = 0.5 * (
            self.prior_log_var
            - torch.log(q_var)
            + (q_var + (q_mean - self.prior_means) ** 2) / p_var
            - 1
        ).sum(-1)  # (n, K)
        kl_z = (gamma * kl_components).sum(-1)
        kl_c = (gamma * (log_gamma - self.log_weights())).sum(-1)
        return kl_z + kl_c
