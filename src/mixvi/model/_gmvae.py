"""The Gaussian-mixture VAE model: a latent space and clusters from one model."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi.model.base import ArchesMixin

from ..module import GMVAEModule
from ._base import register_anndata
from ._vae import VAE

logger = logging.getLogger("mixvi")


class GMVAE(ArchesMixin, VAE):
    """Gaussian-mixture VAE (VaDE-style) for clustering.

    p(c) = softmax(logits), p(z|c) = N(μ_c, diag σ_c²), q(z|x) a diagonal Gaussian and
    q(c|x) = p(c|z). :meth:`train` first pretrains encoder and decoder as an autoencoder,
    then fits a diagonal :class:`~sklearn.mixture.GaussianMixture` (``gmm_restarts``
    restarts, best by GMM likelihood) on the latent means to start π, μ and σ, and then
    trains the full ELBO. Labels are never used.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_components
        Number of mixture components K.
    n_latent, n_hidden, n_layers, likelihood, n_samples, dropout_rate, use_batch_norm, learn_scale
        As in :class:`~mixvi.model.VAE`.

    Examples
    --------
    >>> adata = mixvi.data.fashion_mnist(n_obs=10_000)
    >>> mixvi.model.GMVAE.setup_anndata(adata)
    >>> model = mixvi.model.GMVAE(adata, n_components=10, likelihood="bernoulli")
    >>> model.train(max_epochs=50)
    >>> model.write_results(adata)  # obsm["X_gmvae"], obs["gmvae_cluster"], obsm["gmvae_probabilities"]
    """

    _module_cls = GMVAEModule
    _latent_key = "X_gmvae"
    _cluster_key = "gmvae_cluster"
    _probabilities_key = "gmvae_probabilities"

    def __init__(
        self,
        adata: AnnData | None = None,
        n_components: int = 10,
        n_latent: int = 10,
        n_hidden: int = 256,
        n_layers: int = 2,
        likelihood: str = "normal",
        n_samples: int = 1,
        dropout_rate: float = 0.0,
        use_batch_norm: bool = True,
        learn_scale: bool = True,
    ) -> None:
        if adata is not None and n_components > adata.n_obs:
            raise ValueError(
                f"n_components={n_components} is larger than the number of observations ({adata.n_obs})."
            )
        super(VAE, self).__init__(
            adata,
            likelihood=likelihood,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_samples=n_samples,
            dropout_rate=dropout_rate,
            use_batch_norm=use_batch_norm,
            learn_scale=learn_scale,
            n_components=n_components,
        )
        self._model_summary_string += f", n_components={n_components}"
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        condition_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        **kwargs,
    ) -> None:
        """Register ``adata``; with ``condition_key`` the GMVAE is conditional.

        Conditions go one-hot into encoder and decoder, so clusters follow cell type
        rather than batch.

        Parameters
        ----------
        adata
            AnnData with observations in rows.
        layer
            Use ``adata.layers[layer]`` instead of ``adata.X``.
        condition_key
            Optional ``adata.obs`` column of the condition (batch, sample, ...).
        categorical_covariate_keys
            Further categorical ``adata.obs`` columns fed one-hot.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        register_anndata(
            cls,
            adata,
            setup_method_args,
            layer=layer,
            condition_key=condition_key,
            categorical_covariate_keys=categorical_covariate_keys,
            **kwargs,
        )

    def train(
        self,
        max_epochs: int | None = None,
        pretrain_epochs: int | None = None,
        gmm_restarts: int = 5,
        lr: float = 1e-3,
        batch_size: int = 128,
        kl_warmup_epochs: int | None = None,
        **kwargs,
    ):
        """Pretrain as an autoencoder, initialise the mixture with a GMM, then train.

        Parameters
        ----------
        max_epochs
            Epochs of the full GMVAE training (scvi-tools' heuristic by default).
        pretrain_epochs
            Autoencoder pretraining epochs; ``0`` skips pretraining and the GMM start
            (then expect collapse). Defaults to half of ``max_epochs``.
        gmm_restarts
            Restarts of the diagonal GaussianMixture on the latent means; the one with the
            highest likelihood is kept.
        lr, batch_size, kl_warmup_epochs, **kwargs
            As in :meth:`mixvi.model.VAE.train`.
        """
        from scvi.model._utils import get_max_epochs_heuristic

        if max_epochs is None:
            max_epochs = get_max_epochs_heuristic(self.adata.n_obs)
        if pretrain_epochs is None:
            pretrain_epochs = max(1, max_epochs // 2)
        if pretrain_epochs > 0 and not self.is_trained_:
            self.module.pretraining = True
            try:
                super().train(max_epochs=pretrain_epochs, lr=lr, batch_size=batch_size, **kwargs)
            finally:
                self.module.pretraining = False
            self.pretrain_history_ = self.history_
            self.init_mixture(gmm_restarts=gmm_restarts)
        return super().train(
            max_epochs=max_epochs, lr=lr, batch_size=batch_size, kl_warmup_epochs=kl_warmup_epochs, **kwargs
        )

    def init_mixture(self, gmm_restarts: int = 5, seed: int = 0) -> None:
        """Fit a diagonal GaussianMixture on the latent means and copy it into the prior."""
        from sklearn.mixture import GaussianMixture

        z = self.get_latent_representation()
        gmm = GaussianMixture(
            n_components=self.module.n_components,
            covariance_type="diag",
            n_init=gmm_restarts,
            reg_covar=1e-4,
            random_state=seed,
        ).fit(z)
        logger.info("GMM start: log-likelihood per cell %.3f", gmm.score(z))
        self.module.set_prior(gmm.weights_, gmm.means_, gmm.covariances_)

    @torch.inference_mode()
    def get_cluster_probabilities(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """q(c|x) = p(c|z) at the posterior mean of z; shape ``(n_obs, n_components)``, rows sum to 1."""
        return self._map_minibatches(
            lambda _, out: self.module.responsibilities(out["qz"].loc), adata, indices, batch_size
        )

    def get_cluster_assignments(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """The most probable component of each observation."""
        return self.get_cluster_probabilities(adata, indices, batch_size).argmax(axis=1)

    @property
    def component_weights(self) -> np.ndarray:
        """π, the mixture weights."""
        return self.module.log_weights().exp().detach().cpu().numpy()

    def collapsed_components(self, threshold: float = 0.01) -> list[int]:
        """Components whose weight π_k fell below ``threshold`` (a sign that K is too large)."""
        return [int(k) for k in np.flatnonzero(self.component_weights < threshold)]

    def write_results(self, adata: AnnData | None = None, batch_size: int | None = None) -> AnnData:
        """Write the latent, clusters and cluster probabilities into ``adata``.

        Fills ``obsm["X_gmvae"]`` (posterior means), ``obs["gmvae_cluster"]`` (categorical,
        one category per component) and ``obsm["gmvae_probabilities"]`` (q(c|x)).
        """
        target = super().write_results(adata, batch_size)
        probs = self.get_cluster_probabilities(target, batch_size=batch_size)
        target.obsm[self._probabilities_key] = probs
        target.obs[self._cluster_key] = pd.Categorical(
            probs.argmax(axis=1).astype(str), categories=[str(k) for k in range(probs.shape[1])]
        )
        return target

    def _sample_prior(
        self, n: int, generator: torch.Generator, component: int | None = None
    ) -> torch.Tensor:
        if component is None:
            comps = torch.multinomial(
                torch.as_tensor(self.component_weights), n, replacement=True, generator=generator
            )
        else:
            if not 0 <= component < self.module.n_components:
                raise ValueError(f"component must be in [0, {self.module.n_components}), got {component}.")
            comps = torch.full((n,), component, dtype=torch.long)
        means = self.module.prior_means.detach().cpu()[comps]
        std = torch.exp(0.5 * self.module.prior_log_var.detach().cpu())[comps]
        return (means + std * torch.randn(means.shape, generator=generator)).to(self.device)

    @torch.inference_mode()
    def generate(
        self,
        n: int,
        component: int | None = None,
        condition: str | None = None,
        covariates: Mapping[str, str] | None = None,
        library_size: float | None = None,
        sample: bool = False,
        seed: int | None = None,
    ) -> np.ndarray:
        """Sample z from one mixture component (or from the whole mixture) and decode it.

        Parameters
        ----------
        n
            Number of observations.
        component
            Mixture component k; ``None`` samples components by their weights.
        condition, covariates, library_size, sample, seed
            As in :meth:`mixvi.model.VAE.generate`.
        """
        generator = torch.Generator(device="cpu")
        if seed is not None:
            generator.manual_seed(seed)
        z = self._sample_prior(n, generator, component=component)
        return self._decode(z, condition, covariates, library_size, sample)
