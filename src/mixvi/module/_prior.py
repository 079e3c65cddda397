"""The GMVAE's prior: a Gaussian mixture over the latent space, in one object."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

Covariance = Literal["diag", "full"]
COVARIANCES: tuple[str, ...] = ("diag", "full")


def check_covariance(covariance: str) -> None:
    """Reject an unknown prior covariance before any model is built."""
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be 'diag' or 'full', got {covariance!r}.")


class MixturePrior(nn.Module):
    """p(z) = Σ_c π_c N(z; μ_c, Σ_c), with π = softmax(logits) and μ, Σ learnable.

    The interface follows :class:`scvi.module.base.MogPrior` (``get_prior`` returns a torch
    distribution, ``kl`` the per-cell KL), but the KL here is analytic rather than a
    30-draw Monte Carlo estimate, and the cluster posterior can be given from outside
    (the GMVAE's anchored phase). ``covariance="diag"`` gives Σ_c = diag σ_c² (VaDE :cite:p:`Jiang2017`);
    ``"full"`` gives Σ_c = L_c L_cᵀ with a learnable lower-triangular L_c whose diagonal is
    σ_c. The full prior starts with its off-diagonal part at zero, i.e. as the diagonal one.
    Every density is computed in log space (logsumexp) for stability.

    Parameters
    ----------
    n_components
        Number of components K.
    n_latent
        Dimension of the latent space.
    covariance
        ``"diag"`` or ``"full"`` (see above). A full covariance lets a component follow a
        cluster that lies obliquely to the latent axes, at the cost of K·d² parameters.
    """

    def __init__(self, n_components: int, n_latent: int, covariance: Covariance = "diag") -> None:
        super().__init__()
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}.")
        check_covariance(covariance)
        self.n_components = n_components
        self.n_latent = n_latent
        self.covariance = covariance
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.means = nn.Parameter(torch.randn(n_components, n_latent))
        # log σ²: the diagonal prior's variances, or the squared diagonal of L_c
        self.log_var = nn.Parameter(torch.zeros(n_components, n_latent))
        if covariance == "full":
            # L_c's strictly lower part (its diagonal and upper part are ignored)
            self.tril = nn.Parameter(torch.zeros(n_components, n_latent, n_latent))

    @property
    def is_full(self) -> bool:
        """Whether the components have full covariances."""
        return self.covariance == "full"

    # -- parameters ------------------------------------------------------------------------
    def log_weights(self) -> torch.Tensor:
        """Log π, shape ``(K,)``."""
        return torch.log_softmax(self.logits, dim=-1)

    def scale_tril(self) -> torch.Tensor:
        """L_c with Σ_c = L_c L_cᵀ, shape ``(K, d, d)`` (diagonal for ``"diag"``)."""
        diagonal = torch.diag_embed(torch.exp(0.5 * self.log_var))
        if not self.is_full:
            return diagonal
        return diagonal + torch.tril(self.tril, diagonal=-1)

    @torch.no_grad()
    def set(self, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> None:
        """Set π, μ and the covariances, e.g. from a clustering of the latent.

        Parameters
        ----------
        weights
            Mixture weights π, shape ``(K,)`` (normalised here).
        means
            Component means, shape ``(K, d)``.
        variances
            Variances σ², shape ``(K, d)``, or covariance matrices, shape ``(K, d, d)``; a
            diagonal prior keeps their diagonals.
        """
        device = self.means.device
        weights = np.clip(np.asarray(weights, dtype=np.float64), 1e-8, None)
        self.logits.copy_(torch.as_tensor(np.log(weights / weights.sum()), device=device))
        self.means.copy_(torch.as_tensor(means, device=device))
        variances = np.asarray(variances, dtype=np.float64)
        if variances.ndim == 2:
            variances = np.stack([np.diag(v) for v in variances])
        if not self.is_full:
            diagonal = np.diagonal(variances, axis1=1, axis2=2)
            self.log_var.copy_(torch.as_tensor(np.log(diagonal), device=device))
            return
        tril = np.linalg.cholesky(variances)
        diagonal = np.diagonal(tril, axis1=1, axis2=2)
        self.log_var.copy_(torch.as_tensor(2 * np.log(diagonal), device=device))
        self.tril.copy_(torch.as_tensor(tril, device=device))

    # -- densities -------------------------------------------------------------------------
    def _whiten(self, x: torch.Tensor) -> torch.Tensor:
        """L_c⁻¹ (x − μ_c) for every component: ``(..., d)`` to ``(..., K, d)``."""
        diff = x.unsqueeze(-2) - self.means
        return torch.linalg.solve_triangular(
            self.scale_tril(), diff.unsqueeze(-1), upper=False
        ).squeeze(-1)

    def log_prob_components(self, z: torch.Tensor) -> torch.Tensor:
        """Log N(z; μ_c, Σ_c) for every component, shape ``(..., K)``.

        Parameters
        ----------
        z
            Latent points, shape ``(..., d)``.
        """
        if self.is_full:
            # log |Σ_c| = Σ_i log σ_ci², since L_c's diagonal is σ_c
            return -0.5 * (
                self.n_latent * np.log(2 * np.pi)
                + self.log_var.sum(-1)
                + (self._whiten(z) ** 2).sum(-1)
            )
        z = z.unsqueeze(-2)
        var = torch.exp(self.log_var)
        return -0.5 * (np.log(2 * np.pi) + self.log_var + (z - self.means) ** 2 / var).sum(-1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log p(z) = logsumexp_c [log π_c + log N(z; μ_c, Σ_c)], shape ``(...)``.

        Parameters
        ----------
        z
            Latent points, shape ``(..., d)``.
        """
        return torch.logsumexp(self.log_weights() + self.log_prob_components(z), dim=-1)

    def log_responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """Log p(c|z), shape ``(..., K)``.

        Parameters
        ----------
        z
            Latent points, shape ``(..., d)``.
        """
        return torch.log_softmax(self.log_weights() + self.log_prob_components(z), dim=-1)

    def responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """γ = p(c|z), shape ``(..., K)``; rows sum to 1.

        Parameters
        ----------
        z
            Latent points, shape ``(..., d)``.
        """
        return torch.softmax(self.log_weights() + self.log_prob_components(z), dim=-1)

    def get_prior(self) -> Distribution:
        """The mixture as a :class:`torch.distributions.MixtureSameFamily` (for sampling)."""
        if self.is_full:
            components = MultivariateNormal(self.means, scale_tril=self.scale_tril())
        else:
            components = Independent(Normal(self.means, torch.exp(0.5 * self.log_var)), 1)
        return MixtureSameFamily(Categorical(logits=self.logits), components)

    # -- KL --------------------------------------------------------------------------------
    def kl_components(self, q_mean: torch.Tensor, q_var: torch.Tensor) -> torch.Tensor:
        """KL(N(m, diag s²) || N(μ_c, Σ_c)) in closed form for every component, ``(n, K)``.

        Parameters
        ----------
        q_mean, q_var
            Means m and variances s² of q(z|x), shape ``(n, d)``.
        """
        if self.is_full:
            tril = self.scale_tril()
            eye = torch.eye(self.n_latent, device=tril.device, dtype=tril.dtype)
            inverse = torch.linalg.solve_triangular(tril, eye.expand_as(tril), upper=False)
            precision_diagonal = (inverse**2).sum(-2)  # (K, d): the diagonal of Σ_c⁻¹
            return 0.5 * (
                self.log_var.sum(-1)
                - torch.log(q_var).sum(-1, keepdim=True)
                + q_var @ precision_diagonal.T
                + (self._whiten(q_mean) ** 2).sum(-1)
                - self.n_latent
            )
        q_mean = q_mean.unsqueeze(-2)  # (n, 1, d)
        q_var = q_var.unsqueeze(-2)
        p_var = torch.exp(self.log_var)  # (K, d)
        return 0.5 * (
            self.log_var - torch.log(q_var) + (q_var + (q_mean - self.means) ** 2) / p_var - 1
        ).sum(-1)

    def kl(
        self, qz: Normal, z: torch.Tensor, log_gamma: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-cell KL of the mixture ELBO, with q(c|x) = γ::

            KL = Σ_c γ_c KL(q(z|x) || N(μ_c, Σ_c)) + KL(γ || π)

        Parameters
        ----------
        qz
            q(z|x), a diagonal Gaussian over ``(n, d)``.
        z
            Draws from it, ``(n, d)`` or ``(S, n, d)``; with ``log_gamma=None``, γ = p(c|z)
            (averaged over the draws).
        log_gamma
            A fixed log q(c|x), shape ``(n, K)``, instead of p(c|z). Any q(c|x) gives a lower
            bound on log p(x), so the loss stays minus an ELBO.

        Returns
        -------
        Shape ``(n,)``.
        """
        if log_gamma is None:
            log_gamma = self.log_responsibilities(z)
            if log_gamma.dim() == 3:  # several draws: average the responsibilities
                log_gamma = torch.logsumexp(log_gamma, dim=0) - np.log(log_gamma.shape[0])
        gamma = log_gamma.exp()
        kl_z = (gamma * self.kl_components(qz.loc, qz.scale**2)).sum(-1)
        kl_c = (gamma * (log_gamma - self.log_weights())).sum(-1)
        return kl_z + kl_c

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator, component: int | None = None
    ) -> torch.Tensor:
        """``n`` draws of z on the CPU, from one component or from the whole mixture.

        Parameters
        ----------
        n
            Number of draws.
        generator
            A CPU random generator (the draws do not touch the global random state).
        component
            Draw from this component only; ``None`` draws components by their weights.
        """
        if component is None:
            weights = self.log_weights().exp().cpu()
            comps = torch.multinomial(weights, n, replacement=True, generator=generator)
        else:
            if not 0 <= component < self.n_components:
                raise ValueError(f"component must be in [0, {self.n_components}), got {component}.")
            comps = torch.full((n,), component, dtype=torch.long)
        means = self.means.detach().cpu()[comps]
        tril = self.scale_tril().detach().cpu()[comps]
        noise = torch.randn(means.shape, generator=generator)
        return means + (tril @ noise.unsqueeze(-1)).squeeze(-1)
