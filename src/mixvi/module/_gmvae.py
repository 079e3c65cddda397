"""Gaussian-mixture VAE module (VaDE-style mixture prior)."""

from __future__ import annotations

from typing import Literal

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput

from ._prior import Covariance, MixturePrior
from ._vae import VAEModule

Phase = Literal["ae", "vae", "anchored", "free"]
PHASES: tuple[str, ...] = ("ae", "vae", "anchored", "free")


class GMVAEModule(VAEModule):
    """VAE whose prior is a Gaussian mixture, :class:`~mixvi.module.MixturePrior`.

    The cluster posterior q(c|x) is the responsibility γ = p(c|z) under the prior, and the
    per-cell KL is the prior's analytic one::

        KL = Σ_c γ_c KL(q(z|x) || N(μ_c, Σ_c)) + KL(γ || π)

    **Phases.** The loss takes the training phase as a keyword argument, passed through
    the training plan as in scvi-tools (``plan_kwargs={"phase": ...}``); the module holds
    no phase of its own:

    - ``"ae"``: the reconstruction of the posterior mean alone, i.e. an autoencoder, as
      VaDE :cite:p:`Jiang2017` pretrains;
    - ``"vae"``: the ELBO with the standard normal prior, i.e. a (conditional) VAE, whose KL
      gives the encoder a reason to leave out of z what the decoder is told anyway;
    - ``"anchored"``: the mixture ELBO with q(c|x) fixed to ``anchor_log_gamma``, an
      ``(n_obs, K)`` table of log-probabilities looked up by each cell's row index. Any
      q(c|x) gives a lower bound on log p(x), so this is still minus an ELBO; it lets an
      initial clustering shape the latent space before the responsibilities take over;
    - ``"free"`` (default): the mixture ELBO with q(c|x) = p(c|z).

    Parameters
    ----------
    n_input
        Number of features.
    n_components
        Number of mixture components K.
    covariance
        ``"diag"`` or ``"full"``: the components' covariance (see :class:`MixturePrior`).
    **kwargs
        See :class:`~mixvi.module.VAEModule`.
    """

    def __init__(
        self, n_input: int, n_components: int = 10, covariance: Covariance = "diag", **kwargs
    ) -> None:
        super().__init__(n_input, **kwargs)
        self.prior = MixturePrior(n_components, self.n_latent, covariance)

    @property
    def n_components(self) -> int:
        """Number of mixture components K."""
        return self.prior.n_components

    @property
    def covariance(self) -> str:
        """``"diag"`` or ``"full"``."""
        return self.prior.covariance

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """Log p(z) under the mixture (used by :meth:`marginal_ll`).

        Parameters
        ----------
        z
            Latent points, shape ``(..., n_latent)``.
        """
        return self.prior.log_prob(z)

    def responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """γ = p(c|z), shape ``(..., K)`` (see :meth:`MixturePrior.responsibilities`).

        Parameters
        ----------
        z
            Latent points, shape ``(..., n_latent)``.
        """
        return self.prior.responsibilities(z)

    def forward(self, tensors, *args, loss_kwargs: dict | None = None, **kwargs):
        """scvi-tools' forward pass; the ``"ae"`` phase decodes the posterior mean."""
        if (loss_kwargs or {}).get("phase") == "ae":
            kwargs["inference_kwargs"] = {**(kwargs.get("inference_kwargs") or {}), "mean": True}
        return super().forward(tensors, *args, loss_kwargs=loss_kwargs, **kwargs)

    def inference(self, *args, mean: bool = False, **kwargs) -> dict:
        """:meth:`VAEModule.inference`; with ``mean=True``, z is the posterior mean."""
        outputs = super().inference(*args, **kwargs)
        if mean:  # the draw is still made, so that every phase uses the random stream alike
            outputs["z"] = outputs["qz"].loc
        return outputs

    def kl_local(
        self,
        inference_outputs: dict,
        tensors: dict | None = None,
        phase: Phase = "free",
        anchor_log_gamma: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-cell KL of ``phase`` (see the class description)."""
        qz = inference_outputs["qz"]
        if phase == "ae":
            return torch.zeros_like(qz.loc[..., 0])
        if phase == "vae":
            return super().kl_local(inference_outputs, tensors)  # KL to N(0, I)
        log_gamma = None
        if phase == "anchored":
            log_gamma = _anchor_rows(anchor_log_gamma, tensors).to(qz.loc.device)
        return self.prior.kl(qz, inference_outputs["z"], log_gamma)

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        kl_weight: float = 1.0,
        phase: Phase = "free",
        anchor_log_gamma: torch.Tensor | None = None,
    ) -> LossOutput:
        """Minus the ELBO of ``phase``, averaged over the minibatch.

        Parameters
        ----------
        tensors, inference_outputs, generative_outputs
            As in :meth:`scvi.module.base.BaseModuleClass.loss`.
        kl_weight
            Weight of the KL term (KL warm-up).
        phase
            ``"ae"``, ``"vae"``, ``"anchored"`` or ``"free"`` (see the class description).
        anchor_log_gamma
            The fixed log q(c|x) of the ``"anchored"`` phase, shape ``(n_obs, K)``.
        """
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}.")
        rec = self.reconstruction_loss(tensors[REGISTRY_KEYS.X_KEY], generative_outputs["px"])
        kl = self.kl_local(inference_outputs, tensors, phase, anchor_log_gamma)
        return LossOutput(loss=(rec + kl_weight * kl).mean(), reconstruction_loss=rec, kl_local=kl)


def _anchor_rows(anchor_log_gamma: torch.Tensor | None, tensors: dict | None) -> torch.Tensor:
    """The anchored phase's fixed log q(c|x) of the minibatch's cells."""
    if anchor_log_gamma is None:
        raise ValueError("The anchored phase needs anchor_log_gamma, the start's log q(c|x).")
    if tensors is None or REGISTRY_KEYS.INDICES_KEY not in tensors:
        raise RuntimeError(
            "The anchored phase needs row indices in the minibatch (set up with row_index)."
        )
    rows = tensors[REGISTRY_KEYS.INDICES_KEY].long().ravel().to(anchor_log_gamma.device)
    return anchor_log_gamma[rows]
