"""Gaussian-mixture VAE module (VaDE-style mixture prior)."""

from __future__ import annotations

import numpy as np
import torch
from scvi import REGISTRY_KEYS
from torch import nn

from ._vae import VAEModule


class GMVAEModule(VAEModule):
    """VAE whose prior is a Gaussian mixture: p(z) = Σ_c π_c N(z; μ_c, Σ_c).

    π = softmax(logits), μ and Σ are all learnable. ``covariance="diag"`` gives
    Σ_c = diag σ_c² (VaDE); ``"full"`` gives Σ_c = L_c L_cᵀ with a learnable lower-triangular
    L_c whose diagonal is σ_c, so that a component can follow a cluster that is elongated
    along a direction the latent axes do not align with (with the off-diagonal part at zero,
    as it starts, it is the diagonal prior). The cluster posterior is the
    responsibility q(c|x) = γ = p(c|z) under the prior, and the per-cell KL is::

        KL = Σ_c γ_c KL(q(z|x) || N(μ_c, Σ_c)) + KL(γ || π)

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
    covariance
        ``"diag"`` or ``"full"``: the components' covariance (see above).
    **kwargs
        See :class:`~mixvi.module.VAEModule`.
    """

    def __init__(
        self, n_input: int, n_components: int = 10, covariance: str = "diag", **kwargs
    ) -> None:
        super().__init__(n_input, **kwargs)
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}.")
        check_covariance(covariance)
        self.n_components = n_components
        self.covariance = covariance
        self.prior_logits = nn.Parameter(torch.zeros(n_components))
        self.prior_means = nn.Parameter(torch.randn(n_components, self.n_latent))
        # log σ²: the diagonal prior's variances, or the squared diagonal of L_c
        self.prior_log_var = nn.Parameter(torch.zeros(n_components, self.n_latent))
        if covariance == "full":
            # L_c's strictly lower part (the upper part and diagonal of this are ignored)
            self.prior_tril = nn.Parameter(torch.zeros(n_components, self.n_latent, self.n_latent))
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
        """Set π, μ and the covariances (e.g. from a fitted ``GaussianMixture``).

        Parameters
        ----------
        weights
            Mixture weights π, shape ``(K,)`` (normalised here).
        means
            Component means, shape ``(K, n_latent)``.
        variances
            Component variances σ², shape ``(K, n_latent)``, or full covariance matrices,
            shape ``(K, n_latent, n_latent)``; a diagonal prior keeps their diagonals.
        """
        device = self.prior_means.device
        weights = np.clip(np.asarray(weights, dtype=np.float64), 1e-8, None)
        self.prior_logits.copy_(torch.as_tensor(np.log(weights / weights.sum()), device=device))
        self.prior_means.copy_(torch.as_tensor(means, device=device))
        variances = np.asarray(variances, dtype=np.float64)
        if variances.ndim == 2:
            variances = np.stack([np.diag(v) for v in variances])
        if self.covariance == "diag":
            self.prior_log_var.copy_(
                torch.as_tensor(np.log(np.diagonal(variances, axis1=1, axis2=2)), device=device)
            )
            return
        tril = np.linalg.cholesky(variances)
        self.prior_log_var.copy_(
            torch.as_tensor(2 * np.log(np.diagonal(tril, axis1=1, axis2=2)), device=device)
        )
        self.prior_tril.copy_(torch.as_tensor(tril, device=device))

    def scale_tril(self) -> torch.Tensor:
        """L_c with Σ_c = L_c L_cᵀ, shape ``(K, n_latent, n_latent)`` (diagonal for ``"diag"``)."""
        diagonal = torch.diag_embed(torch.exp(0.5 * self.prior_log_var))
        if self.covariance == "diag":
            return diagonal
        return diagonal + torch.tril(self.prior_tril, diagonal=-1)

    def _whiten(self, x: torch.Tensor) -> torch.Tensor:
        """L_c⁻¹ (x − μ_c) for every component: ``(..., n_latent)`` to ``(..., K, n_latent)``."""
        diff = x.unsqueeze(-2) - self.prior_means
        tril = self.scale_tril()
        return torch.linalg.solve_triangular(tril, diff.unsqueeze(-1), upper=False).squeeze(-1)

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
        if self.covariance == "full":
            # log |Σ_c| = Σ_i log σ_ci², since L_c's diagonal is σ_c
            return -0.5 * (
                self.n_latent * np.log(2 * np.pi)
                + self.prior_log_var.sum(-1)
                + (self._whiten(z) ** 2).sum(-1)
            )
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
        kl_components = self.kl_to_components(qz.loc, qz.scale**2)  # (n, K)
        kl_z = (gamma * kl_components).sum(-1)
        kl_c = (gamma * (log_gamma - self.log_weights())).sum(-1)
        return kl_z + kl_c

    def kl_to_components(self, q_mean: torch.Tensor, q_var: torch.Tensor) -> torch.Tensor:
        """KL(N(m, diag s²) || N(μ_c, Σ_c)) in closed form for every component, ``(n, K)``.

        Parameters
        ----------
        q_mean, q_var
            Means m and variances s² of q(z|x), shape ``(n, n_latent)``.
        """
        if self.covariance == "full":
            tril = self.scale_tril()
            eye = torch.eye(self.n_latent, device=tril.device, dtype=tril.dtype)
            inverse = torch.linalg.solve_triangular(tril, eye.expand_as(tril), upper=False)
            precision_diagonal = (inverse**2).sum(-2)  # (K, d): the diagonal of Σ_c⁻¹
            return 0.5 * (
                self.prior_log_var.sum(-1)
                - torch.log(q_var).sum(-1, keepdim=True)
                + q_var @ precision_diagonal.T
                + (self._whiten(q_mean) ** 2).sum(-1)
                - self.n_latent
            )
        q_mean = q_mean.unsqueeze(-2)  # (n, 1, d)
        q_var = q_var.unsqueeze(-2)
        p_var = torch.exp(self.prior_log_var)  # (K, d)
        return 0.5 * (
            self.prior_log_var
            - torch.log(q_var)
            + (q_var + (q_mean - self.prior_means) ** 2) / p_var
            - 1
        ).sum(-1)


def check_covariance(covariance: str) -> None:
    """Reject an unknown prior covariance before any model is built."""
    if covariance not in ("diag", "full"):
        raise ValueError(f"covariance must be 'diag' or 'full', got {covariance!r}.")
