"""The Gaussian-mixture VAE model: a latent space and clusters from one model."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from ..module import GMVAEModule
from ._base import ReferenceMappingMixin, register_anndata
from ._vae import VAE

logger = logging.getLogger("mixvi")


class GMVAE(ReferenceMappingMixin, VAE):
    """Gaussian-mixture VAE (VaDE-style) for clustering.

    p(c) = softmax(logits), p(z|c) = N(μ_c, diag σ_c²), q(z|x) a diagonal Gaussian and
    q(c|x) = p(c|z). :meth:`train` runs three phases, and labels are never used:

    1. **pretraining**: encoder and decoder as an autoencoder (the loss is the
       reconstruction of the posterior mean); with a condition or covariates, as a
       conditional VAE instead, whose KL makes the latent drop what the decoder is given;
    2. **mixture start** (:meth:`init_mixture`): after an autoencoder (``init="umap"``) a
       full-covariance GaussianMixture on a UMAP of the pretrained latent, as in N2D, whose
       responsibilities set π, μ and σ²; after a VAE (``init="gmm"``) a diagonal
       GaussianMixture on the latent itself, as in VaDE; ``init="kmeans"``, k-means on the
       latent, is a third choice;
    3. **anchored, then free ELBO training**: for ``anchor_epochs`` the cluster posterior
       q(c|x) stays fixed to the start's responsibilities, so that the encoder makes those
       clusters Gaussian; then q(c|x) = p(c|z) and the full ELBO is trained.

    Attributes
    ----------
    pretrain_history_, anchor_history_
        The history tables (as in ``model.history``) of the pretraining and anchored
        phases alone; ``model.history`` holds every epoch.
    phase_seconds_
        Wall-clock seconds of each phase of the last :meth:`train` call: ``"pretraining"``,
        ``"mixture_start"`` (of which ``"umap"``, the embedding behind ``init="umap"``),
        ``"anchored"`` and ``"free"``; a phase that did not run has 0.
    n_components_choice_
        With ``n_components="auto"``: :meth:`compare_n_components`' table of the
        candidates (``chosen`` marks K); otherwise ``None``.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_components
        Number of mixture components K, or ``"auto"``: K is chosen among ``k_range`` as
        :meth:`compare_n_components` chooses it (``fit_models=False``; no labels). The
        choice pretrains one VAE when the model is built; the chosen K is what
        :meth:`save` records, so loading does not choose again.
    k_range
        With ``n_components="auto"``: the smallest and largest candidate K (the largest is
        capped at the number of cells).
    n_latent, n_hidden, n_layers, likelihood, n_samples, dropout_rate, use_batch_norm, learn_scale, input_dropout_rate
        As in :class:`~mixvi.model.VAE`.
    prior_covariance
        The components' covariance: ``"diag"`` (σ_c², as in VaDE) or ``"full"`` (Σ_c, whose
        components can follow clusters that lie obliquely to the latent axes; the mixture
        start then keeps its clusters' full covariances).

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
        n_components: int | str = 10,
        n_latent: int = 10,
        n_hidden: int = 256,
        n_layers: int = 2,
        likelihood: str = "normal",
        n_samples: int = 1,
        dropout_rate: float = 0.0,
        use_batch_norm: bool = True,
        learn_scale: bool = True,
        input_dropout_rate: float = 0.0,
        prior_covariance: str = "diag",
        k_range: tuple[int, int] = (2, 20),
    ) -> None:
        from ..module._gmvae import check_covariance

        check_covariance(prior_covariance)
        choice = None
        if isinstance(n_components, str):
            # chosen before the module is built, whose prior has K components; not a local
            # of its own name, so that init_params_ (and so save/load) record the chosen K
            choice = self._choose_n_components(
                adata,
                n_components,
                k_range,
                {
                    "n_latent": n_latent,
                    "n_hidden": n_hidden,
                    "n_layers": n_layers,
                    "likelihood": likelihood,
                    "n_samples": n_samples,
                    "dropout_rate": dropout_rate,
                    "use_batch_norm": use_batch_norm,
                    "learn_scale": learn_scale,
                    "input_dropout_rate": input_dropout_rate,
                    "prior_covariance": prior_covariance,
                },
            )
            n_components = int(choice.index[choice["chosen"]][0])
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
            input_dropout_rate=input_dropout_rate,
            n_components=n_components,
            covariance=prior_covariance,
        )
        self._model_summary_string += (
            f", n_components={n_components}, prior_covariance={prior_covariance!r}"
        )
        self.init_params_ = self._get_init_params(locals())
        self.n_components_choice_ = choice
        self._warn_small_conditions(n_components)

    @classmethod
    def _choose_n_components(
        cls, adata: AnnData | None, value: str, k_range: tuple[int, int], model_kwargs: dict
    ) -> pd.DataFrame:
        """``n_components="auto"``: :meth:`compare_n_components`' choice among ``k_range``."""
        from .._settings import settings

        if value != "auto":
            raise ValueError(f"n_components must be an integer or 'auto', got {value!r}.")
        if adata is None:
            raise ValueError("n_components='auto' needs the AnnData to choose K on.")
        from ._n_components import chosen_k, k_range_candidates

        low, high = k_range
        candidates = k_range_candidates(low, high, adata.n_obs, f"k_range={tuple(k_range)}")
        seed = settings.seed
        table = cls.compare_n_components(
            adata,
            candidates,
            seed=0 if seed is None else seed,
            model_kwargs=model_kwargs,
            fit_models=False,
        )
        settings.seed = seed  # the model is then seeded as if no choice had been made
        logger.info("n_components='auto': K=%d of %d-%d", chosen_k(table), low, high)
        return table

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
            row_index=True,
            **kwargs,
        )

    def train(
        self,
        max_epochs: int | None = None,
        pretrain_epochs: int | None = None,
        init: str = "auto",
        gmm_restarts: int = 5,
        umap_neighbors: int = 15,
        umap_cells: int | None = None,
        anchor_epochs: int | None = None,
        pretraining: str = "auto",
        lr: float = 1e-3,
        batch_size: int = 128,
        kl_warmup_epochs: int | None = 0,
        **kwargs,
    ):
        """Pretrain as an autoencoder, initialise the mixture, then train the ELBO.

        Parameters
        ----------
        max_epochs
            Epochs of GMVAE training after pretraining (scvi-tools' heuristic by default),
            including the ``anchor_epochs``.
        pretrain_epochs
            Pretraining epochs; ``0`` skips pretraining and the mixture start (then expect
            collapse). Defaults to half of ``max_epochs``.
        init
            How the mixture starts (see :meth:`init_mixture`): ``"umap"`` (clusters found on
            a UMAP of the pretrained latent, as in N2D) or ``"gmm"`` (a diagonal
            GaussianMixture on the latent itself, as in VaDE). ``"auto"`` (default) takes
            ``"umap"`` after an autoencoder pretraining, whose clusters are curved, and
            ``"gmm"`` after a VAE pretraining, whose KL to N(0, I) makes them close to
            Gaussian blobs. (On simulated counts with unequal cell types, the UMAP start
            split the largest type where the GMM start did not; labels scored that
            comparison, see the user guide.) ``"kmeans"``: k-means on the latent, equal
            spheres, in seconds where the UMAP takes minutes.
        gmm_restarts
            Restarts of the GaussianMixture; the one with the highest likelihood is kept.
        umap_neighbors
            Neighbours of the UMAP behind ``init="umap"`` (see :meth:`init_mixture`).
        umap_cells
            The UMAP behind ``init="umap"`` is fitted on at most this many cells, drawn at
            random (see :meth:`init_mixture`); ``None`` (default) fits it on all.
        anchor_epochs
            Epochs at the start during which q(c|x) stays fixed to the initial clustering
            (see :class:`~mixvi.module.GMVAEModule`), so that the encoder makes those
            clusters Gaussian before p(c|z) takes over. Defaults to a quarter of
            ``max_epochs`` with ``init="umap"`` or ``"kmeans"`` and to 0 with ``init="gmm"``,
            whose start is already a Gaussian mixture in the latent.
        pretraining
            How encoder and decoder are pretrained: ``"ae"`` as an autoencoder (VaDE, N2D),
            ``"vae"`` as a VAE with the standard normal prior (a conditional VAE when the
            model has a condition). ``"auto"`` (default) takes ``"vae"`` when the model has a
            condition or covariates and ``"ae"`` otherwise: an autoencoder keeps in its
            latent what its decoder is also told, so a mixture started there would cluster by
            condition, while the VAE's KL makes the encoder drop it.
        lr, batch_size, **kwargs
            As in :meth:`mixvi.model.VAE.train`.
        kl_warmup_epochs
            KL warm-up epochs; none by default, because pretraining already gives the
            decoder a useful latent.
        """
        from scvi.model._utils import get_max_epochs_heuristic

        pretraining = self._pretraining_mode(pretraining)
        if init == "auto":
            init = "gmm" if pretraining == "vae" else "umap"
        _check_init("init", init, umap_neighbors)
        _check_umap_cells(umap_cells)
        if max_epochs is None:
            max_epochs = get_max_epochs_heuristic(self.adata.n_obs)
        if pretrain_epochs is None:
            pretrain_epochs = max(1, max_epochs // 2)
        if anchor_epochs is None:
            anchor_epochs = 0 if init == "gmm" else max_epochs // 4
        anchor_epochs = min(anchor_epochs, max_epochs)
        # scvi-tools' Adam eps of 0.01 damps small gradients (e.g. from pixel likelihoods);
        # on MNIST-5k eps=1e-8 gave a better-separated pretrained latent.
        kwargs["plan_kwargs"] = {"eps": 1e-8, **(kwargs.get("plan_kwargs") or {})}
        common = {"lr": lr, "batch_size": batch_size, **kwargs}
        anchored = 0  # the anchored epochs count towards max_epochs only when they run
        # the phases' costs differ by orders of magnitude across data (the UMAP start
        # dominates on 70,000 images), so users and the benchmark can see where time goes
        seconds = self.phase_seconds_ = dict.fromkeys(PHASES, 0.0)
        if pretrain_epochs > 0 and not self.is_trained_:
            with _timed(seconds, "pretraining"):
                self._pretrain(pretrain_epochs, pretraining, common)
            with _timed(seconds, "mixture_start"):
                fitted = self._start_mixture(
                    init, gmm_restarts, umap_neighbors, umap_cells=umap_cells
                )
            seconds["umap"] = fitted.umap_seconds
            start = fitted.responsibilities
            if anchor_epochs > 0:
                # on the module's device: a host-side table would be copied over at every step
                gamma = torch.as_tensor(
                    start, dtype=torch.float32, device=self.module.prior_means.device
                )
                self.module.anchor_log_gamma = torch.log(gamma.clamp_min(1e-8))
                before = self._history_lengths()
                try:
                    with _timed(seconds, "anchored"):
                        super().train(max_epochs=anchor_epochs, kl_warmup_epochs=0, **common)
                finally:
                    self.module.anchor_log_gamma = None
                self.anchor_history_ = self._history_since(before)
                anchored = anchor_epochs
        remaining = max_epochs - anchored
        if remaining <= 0:
            return None
        with _timed(seconds, "free"):
            return super().train(max_epochs=remaining, kl_warmup_epochs=kl_warmup_epochs, **common)

    def _pretrain(self, epochs: int, mode: str, common: Mapping) -> None:
        """The pretraining phase alone: an AE or a VAE, as ``mode`` says."""
        self.module.pretraining = mode
        try:
            super().train(max_epochs=epochs, **common)
        finally:
            self.module.pretraining = False
        self.pretraining_ = mode
        self.pretrain_history_ = self._history_since({})

    def _warn_small_conditions(self, n_components: int) -> None:
        """Warn when a condition has fewer cells than components: it cannot hold every cluster."""
        import warnings

        condition_key = self.registry_["setup_args"].get("condition_key")
        if condition_key is None or self.adata is None:
            return
        counts = self.adata.obs[condition_key].value_counts()
        small = counts[counts < n_components]
        if len(small):
            named = ", ".join(f"{name!r} ({int(n)} cells)" for name, n in small.items())
            warnings.warn(
                f"Condition(s) {named} of adata.obs[{condition_key!r}] have fewer cells than "
                f"n_components={n_components}: such a condition cannot hold every cluster, and a "
                "type seen only there is hard to tell from the condition's effect.",
                UserWarning,
                stacklevel=3,
            )

    def _pretraining_mode(self, pretraining: str) -> str:
        if pretraining not in ("auto", "ae", "vae"):
            raise ValueError(f"pretraining must be 'auto', 'ae' or 'vae', got {pretraining!r}.")
        if pretraining != "auto":
            return pretraining
        covariates = REGISTRY_KEYS.CAT_COVS_KEY in self.adata_manager.data_registry
        conditional = self.summary_stats.n_batch > 1 or covariates
        return "vae" if conditional else "ae"

    def _history_lengths(self) -> dict[str, int]:
        return {key: len(table) for key, table in (self.history_ or {}).items()}

    def _history_since(self, before: Mapping[str, int]) -> dict[str, pd.DataFrame]:
        """Copies of the rows each history table gained after ``before`` (table → rows): one phase.

        scvi-tools appends every ``train()`` to the same tables, so a phase's history is a
        slice of them, copied so that later phases leave it alone.
        """
        return {
            key: table.iloc[before.get(key, 0) :].copy()
            for key, table in (self.history_ or {}).items()
        }

    def init_mixture(
        self,
        method: str = "umap",
        gmm_restarts: int = 5,
        umap_neighbors: int = 15,
        seed: int | None = None,
        posterior_variance: bool | None = None,
        umap_cells: int | None = None,
    ) -> np.ndarray:
        """Start π, μ and σ² from a clustering of the latent means; no labels are used.

        Parameters
        ----------
        method
            ``"gmm"``: fit a diagonal :class:`~sklearn.mixture.GaussianMixture` on the
            latent means and copy it into the prior. ``"umap"``: embed the latent means with
            UMAP, fit a full-covariance GaussianMixture there (UMAP separates clusters that
            are curved in the latent), then set each component's π, μ and σ² to the
            responsibility-weighted moments of the latent means. ``"kmeans"``: k-means on
            the latent means, each cell wholly in its cluster, and π, μ and σ² the
            clusters' moments; it cuts equal spheres, which on pbmc68k_reduced matched the
            labelled types better than the UMAP start, though the ELBO preferred the UMAP
            start there and on the other benchmark data (user guide).
        gmm_restarts
            ``n_init`` of the GaussianMixture (of k-means with ``"kmeans"``); the best fit
            is kept.
        umap_neighbors
            ``n_neighbors`` of the UMAP (``"umap"`` only). More neighbours weigh the global
            structure more, which merges look-alike subclusters; scanpy's default is 15.
        seed
            Random state of UMAP and the GaussianMixture (default: ``mixvi.settings.seed``).
        posterior_variance
            Add each component's mean posterior variance of q(z|x) to its σ², so that the
            components match the moments of the aggregate posterior (the cells' q(z|x),
            not only their means). Default: when the model was pretrained as a VAE, whose
            posterior variances are trained; an autoencoder's are not. Components as narrow
            as the spread of the means alone (on simulated counts, 0.04 against a posterior
            variance of 0.57) made the free ELBO phase merge clusters and empty components.
        umap_cells
            ``"umap"`` only: fit the UMAP and its GaussianMixture on at most this many cells,
            drawn at random; every other cell takes the mean responsibilities of its
            ``umap_neighbors`` nearest fitted cells in the latent. UMAP's time grows faster
            than the number of cells: on 70,000 Fashion-MNIST images 20,000 cut the UMAP
            from about 170 s to 28 s, at about 0.02 lower ACC of the start (user guide).
            ``None`` (default) fits on all cells.

        Returns
        -------
        Initial responsibilities, shape ``(n_obs, n_components)``.
        """
        return self._start_mixture(
            method, gmm_restarts, umap_neighbors, seed, posterior_variance, umap_cells
        ).responsibilities

    def _start_mixture(
        self,
        method: str,
        gmm_restarts: int,
        umap_neighbors: int,
        seed: int | None = None,
        posterior_variance: bool | None = None,
        umap_cells: int | None = None,
    ) -> MixtureStart:
        """:meth:`init_mixture`, returning the whole start (its UMAP time too)."""
        from .._settings import settings

        seed = settings.seed if seed is None else seed
        if posterior_variance is None:
            posterior_variance = getattr(self, "pretraining_", "ae") == "vae"
        z, z_var = self.get_latent_representation(return_dist=True)
        start = mixture_start(
            z,
            self.module.n_components,
            method,
            gmm_restarts,
            umap_neighbors,
            seed,
            z_var=z_var if posterior_variance else None,
            covariance=self.module.covariance,
            umap_cells=umap_cells,
        )
        logger.info("%s start: log-likelihood per cell %.3f", method, start.log_likelihood)
        self.module.set_prior(start.weights, start.means, start.variances)
        return start

    @classmethod
    def compare_n_components(
        cls,
        adata: AnnData,
        n_components: Sequence[int],
        train_size: float = 0.9,
        seed: int = 0,
        collapse_threshold: float = 0.01,
        model_kwargs: Mapping | None = None,
        train_kwargs: Mapping | None = None,
        fit_models: bool = True,
        selection_epochs: int | None = None,
    ) -> pd.DataFrame:
        """Choose K: clusters apart both in a UMAP of the latent and in the latent itself.

        **The choice** (column ``chosen``): one VAE is pretrained on all cells (the GMVAE's
        pretraining with ``pretraining="vae"``); for each candidate K a full-covariance
        Gaussian mixture clusters a 2-D UMAP of its posterior means, and the clusters'
        silhouette is measured in the UMAP and in the latent. Each silhouette is divided by
        its best over the candidates, and the K whose worse view is highest is chosen (see
        :func:`~mixvi.model._n_components.separation_scores`). The UMAP makes curved
        clusters compact, so a mixture needs one component for each; the latent keeps
        UMAP's tears from counting as gaps. No labels are used. The held-out ELBO barely
        moves with K, because the decoder makes up for a coarse prior, and the BIC of a
        mixture in the latent splits or merges the clusters of images, so neither can choose.
        K = 1 has no silhouette; it is chosen only when it is the only candidate.

        **The models** (``fit_models=True``): every K also gets a GMVAE trained on the same
        random ``train_size`` fraction of the cells, whose held-out ELBO and collapsed
        components (weight below ``collapse_threshold``) are reported.

        Parameters
        ----------
        adata
            AnnData already registered with :meth:`setup_anndata`.
        n_components
            The candidate values of K: distinct integers between 1 and the number of cells.
        train_size
            Fraction of cells used for training the per-K models; the rest is held out.
        seed
            Seed of the pretraining, the UMAP and mixtures of the choice, the split and the training.
        collapse_threshold
            Weight below which a component counts as collapsed.
        model_kwargs, train_kwargs
            Passed to the constructor and to :meth:`train` (the per-K models).
        fit_models
            Also train one GMVAE per K (the held-out ELBO columns); ``False`` gives the
            choice alone, at the cost of one pretraining.
        selection_epochs
            Epochs of the VAE pretraining behind the choice; by default
            ``train_kwargs["pretrain_epochs"]``, else half of scvi-tools' epoch heuristic.

        Returns
        -------
        One row per K with ``silhouette_umap``, ``silhouette_latent``, ``score`` (the worse
        of the two, each relative to its best; higher is better), ``chosen`` (exactly one
        ``True``) and, with ``fit_models``, ``heldout_elbo`` (mean per cell; higher is
        better), ``train_elbo``, ``n_collapsed`` and ``collapsed`` (component indices).

        Raises
        ------
        ValueError
            Before any training, for an empty candidate list, a K below 1 or above the number
            of cells, or a K given twice.

        Examples
        --------
        >>> mixvi.model.GMVAE.setup_anndata(adata)
        >>> table = mixvi.model.GMVAE.compare_n_components(adata, range(2, 16), fit_models=False)
        >>> best_k = int(table.index[table["chosen"]][0])
        """
        from scvi.model._utils import get_max_epochs_heuristic

        from .._settings import settings
        from ._n_components import check_candidates, separation_scores

        ks = check_candidates(n_components, adata.n_obs)
        if fit_models and not 0 < train_size < 1:
            raise ValueError(
                f"train_size must be in (0, 1) so that cells are held out, got {train_size}."
            )
        train_kwargs = dict(train_kwargs or {})
        model_kwargs = dict(model_kwargs or {})
        if selection_epochs is None:
            selection_epochs = train_kwargs.get("pretrain_epochs") or max(
                1, get_max_epochs_heuristic(adata.n_obs) // 2
            )
        settings.seed = seed
        selector = cls(adata, n_components=min(ks), **model_kwargs)
        # the per-K models' trainer settings apply to the pretraining too, not their phases' lengths
        phases = (
            "max_epochs",
            "pretrain_epochs",
            "anchor_epochs",
            "kl_warmup_epochs",
            "train_size",
        )
        common = {
            key: value
            for key, value in train_kwargs.items()
            if key not in phases
            and key not in ("init", "gmm_restarts", "umap_neighbors", "umap_cells", "pretraining")
        }
        common["plan_kwargs"] = {"eps": 1e-8, **(train_kwargs.get("plan_kwargs") or {})}
        selector._pretrain(selection_epochs, "vae", common)
        table = separation_scores(selector.get_latent_representation(), ks, seed=seed)
        if not fit_models:
            return table
        rows = []
        for k in ks:
            settings.seed = seed  # the same split and start for every K
            model = cls(adata, n_components=k, **model_kwargs)
            model.train(train_size=train_size, **train_kwargs)
            collapsed = model.collapsed_components(collapse_threshold)
            rows.append(
                {
                    "n_components": k,
                    "heldout_elbo": float(model.get_elbo(indices=model.validation_indices)),
                    "train_elbo": float(model.get_elbo(indices=model.train_indices)),
                    "n_collapsed": len(collapsed),
                    "collapsed": collapsed,
                }
            )
        return table.join(pd.DataFrame(rows).set_index("n_components"))

    @torch.inference_mode()
    def get_cluster_probabilities(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """q(c|x) = p(c|z) at the posterior mean of z; shape ``(n_obs, n_components)``, rows sum to 1.

        Parameters
        ----------
        adata
            AnnData with the same features as the training data (default: the training AnnData).
        indices
            Indices of the observations to use (default: all).
        batch_size
            Minibatch size (default: 1024).
        """
        return self._map_minibatches(
            lambda _, out: self.module.responsibilities(out["qz"].loc), adata, indices, batch_size
        )

    def get_cluster_assignments(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """The most probable component of each observation.

        Parameters
        ----------
        adata
            AnnData with the same features as the training data (default: the training AnnData).
        indices
            Indices of the observations to use (default: all).
        batch_size
            Minibatch size (default: 1024).
        """
        return self.get_cluster_probabilities(adata, indices, batch_size).argmax(axis=1)

    @property
    def component_weights(self) -> np.ndarray:
        """π, the mixture weights."""
        return self.module.log_weights().exp().detach().cpu().numpy()

    def collapsed_components(self, threshold: float = 0.01) -> list[int]:
        """Components whose weight π_k fell below ``threshold`` (a sign that K is too large).

        Parameters
        ----------
        threshold
            Weight below which a component counts as collapsed.
        """
        return [int(k) for k in np.flatnonzero(self.component_weights < threshold)]

    def write_results(self, adata: AnnData | None = None, batch_size: int | None = None) -> AnnData:
        """Write the latent, clusters and cluster probabilities into ``adata``.

        Fills ``obsm["X_gmvae"]`` (posterior means), ``obs["gmvae_cluster"]`` (categorical,
        one category per component) and ``obsm["gmvae_probabilities"]`` (q(c|x)).

        Parameters
        ----------
        adata
            AnnData to write into (default: the training AnnData).
        batch_size
            Minibatch size (default: 1024).
        """
        target = self.adata if adata is None else adata
        with torch.inference_mode():  # one encoder pass gives both the latent and q(c|x)
            latent, probs = self._map_minibatches(
                lambda _, out: (out["qz"].loc, self.module.responsibilities(out["qz"].loc)),
                target,
                None,
                batch_size,
            )
        target.obsm[self._latent_key] = latent
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
                raise ValueError(
                    f"component must be in [0, {self.module.n_components}), got {component}."
                )
            comps = torch.full((n,), component, dtype=torch.long)
        means = self.module.prior_means.detach().cpu()[comps]
        tril = self.module.scale_tril().detach().cpu()[comps]
        noise = torch.randn(means.shape, generator=generator)
        return (means + (tril @ noise.unsqueeze(-1)).squeeze(-1)).to(self.device)

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


def _check_init(name: str, method: str, umap_neighbors: int) -> None:
    """Reject a bad start before any training time is spent."""
    if method not in ("umap", "gmm", "kmeans"):
        raise ValueError(f"{name} must be 'umap', 'gmm' or 'kmeans', got {method!r}.")
    if method == "umap" and umap_neighbors < 2:
        raise ValueError(f"umap_neighbors must be >= 2, got {umap_neighbors}.")


PHASES = ("pretraining", "mixture_start", "umap", "anchored", "free")


@contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Add the wall-clock time of the block to ``seconds[phase]``."""
    began = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] += time.perf_counter() - began


@dataclass
class MixtureStart:
    """A clustering of latent means turned into the GMVAE prior's π, μ and σ²."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    responsibilities: np.ndarray
    log_likelihood: float  # per cell, of the GaussianMixture on the space it was fitted in
    umap_seconds: float = 0.0  # of the embedding behind method="umap" (most of its cost)


def mixture_start(
    z: np.ndarray,
    n_components: int,
    method: str,
    gmm_restarts: int,
    umap_neighbors: int,
    seed: int,
    z_var: np.ndarray | None = None,
    covariance: str = "diag",
    umap_cells: int | None = None,
) -> MixtureStart:
    """The clustering behind :meth:`GMVAE.init_mixture`, for any latent means ``z``.

    ``"gmm"``: a GaussianMixture on ``z`` with the prior's ``covariance``, copied as it is.
    ``"umap"``: a full-covariance GaussianMixture on a UMAP of ``z``, whose
    responsibilities weigh the moments of ``z`` (the prior lives in the latent, not in the
    UMAP): variances for a diagonal prior, covariance matrices for a full one.
    ``"kmeans"``: k-means on ``z``, with hard responsibilities and the same moments; its
    ``log_likelihood`` is that of ``z`` under the resulting mixture. With ``z_var``
    (the posterior variances), each component's variances also gain its members' mean
    posterior variance: the moments of the aggregate posterior rather than of the means
    alone. With ``umap_cells``, the UMAP and its mixture see at most that many cells, drawn
    at random (see :func:`_subsampled_responsibilities`).
    """
    from sklearn.mixture import GaussianMixture

    _check_init("method", method, umap_neighbors)
    _check_umap_cells(umap_cells)
    if method == "gmm":
        gmm = GaussianMixture(
            n_components,
            covariance_type=covariance,
            n_init=gmm_restarts,
            reg_covar=1e-4,
            random_state=seed,
        ).fit(z)
        resp = gmm.predict_proba(z)
        start = MixtureStart(gmm.weights_, gmm.means_, gmm.covariances_, resp, gmm.score(z))
        return _with_posterior_variance(start, z_var)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        labels = KMeans(n_components, n_init=gmm_restarts, random_state=seed).fit_predict(z)
        resp = np.eye(n_components)[labels]
        weights, means, variances = _moments(z, resp, covariance)
        start = MixtureStart(
            weights, means, variances, resp, _log_likelihood(z, weights, means, variances)
        )
        return _with_posterior_variance(start, z_var)
    fitted = _subsample(z.shape[0], umap_cells, seed)
    began = time.perf_counter()
    embedding = _umap_embedding(z[fitted], seed, umap_neighbors)
    umap_seconds = time.perf_counter() - began
    gmm = GaussianMixture(
        n_components, covariance_type="full", n_init=gmm_restarts, reg_covar=1e-4, random_state=seed
    ).fit(embedding)
    resp = _subsampled_responsibilities(z, fitted, gmm.predict_proba(embedding), umap_neighbors)
    start = MixtureStart(*_moments(z, resp, covariance), resp, gmm.score(embedding), umap_seconds)
    return _with_posterior_variance(start, z_var)


def _moments(
    z: np.ndarray, resp: np.ndarray, covariance: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and variances (diagonal) or covariances (full) of a soft clustering of ``z``."""
    mass = resp.sum(axis=0) + 1e-10
    means = resp.T @ z / mass[:, None]
    if covariance == "full":
        centred = z[None, :, :] - means[:, None, :]  # (K, n, d)
        variances = np.einsum("nk,kni,knj->kij", resp, centred, centred) / mass[:, None, None]
        variances = variances + 1e-4 * np.eye(z.shape[1])
    else:
        variances = np.maximum(resp.T @ z**2 / mass[:, None] - means**2, 0) + 1e-4
    return mass / mass.sum(), means, variances


def _log_likelihood(
    z: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray
) -> float:
    """Mean log-likelihood per cell of ``z`` under a Gaussian mixture (diagonal or full)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    log_density = np.stack(
        [
            np.log(max(w, 1e-300))
            + multivariate_normal(m, v if v.ndim == 2 else np.diag(v), allow_singular=True).logpdf(
                z
            )
            for w, m, v in zip(weights, means, variances, strict=True)
        ],
        axis=-1,
    ).reshape(z.shape[0], -1)  # logpdf drops the cell axis when z has one row
    return float(logsumexp(log_density, axis=1).mean())


def _check_umap_cells(umap_cells: int | None) -> None:
    # checked before pretraining: a float would otherwise fail only at the draw, after it
    if umap_cells is None:
        return
    if (
        isinstance(umap_cells, bool)
        or not isinstance(umap_cells, int | np.integer)
        or umap_cells < 2
    ):
        raise ValueError(f"umap_cells must be None or an integer >= 2, got {umap_cells!r}.")


def _subsample(n_obs: int, umap_cells: int | None, seed: int) -> np.ndarray:
    """Sorted indices of the cells the UMAP start is fitted on: all, or ``umap_cells`` at random."""
    if umap_cells is None or umap_cells >= n_obs:
        return np.arange(n_obs)
    return np.sort(np.random.default_rng(seed).choice(n_obs, umap_cells, replace=False))


def _subsampled_responsibilities(
    z: np.ndarray, fitted: np.ndarray, resp_fitted: np.ndarray, n_neighbors: int
) -> np.ndarray:
    """Responsibilities of every cell from those of the cells the UMAP start was fitted on.

    A cell outside the subsample takes the mean responsibilities of its ``n_neighbors``
    nearest fitted cells in the latent, which is what UMAP's own neighbourhood graph
    would have tied it to. (Why subsample, and what it cost: ``init_mixture``'s
    ``umap_cells``.)
    """
    if len(fitted) == z.shape[0]:
        return resp_fitted
    from sklearn.neighbors import NearestNeighbors

    resp = np.empty((z.shape[0], resp_fitted.shape[1]), dtype=resp_fitted.dtype)
    resp[fitted] = resp_fitted
    rest = np.setdiff1d(np.arange(z.shape[0]), fitted, assume_unique=True)
    k = min(n_neighbors, len(fitted))
    _, neighbours = NearestNeighbors(n_neighbors=k).fit(z[fitted]).kneighbors(z[rest])
    resp[rest] = resp_fitted[neighbours].mean(axis=1)
    return resp


def _with_posterior_variance(start: MixtureStart, z_var: np.ndarray | None) -> MixtureStart:
    if z_var is None:
        return start
    resp = start.responsibilities
    extra = resp.T @ z_var / (resp.sum(axis=0)[:, None] + 1e-10)
    if start.variances.ndim == 3:  # full covariances: the posterior variance adds to the diagonal
        extra = np.stack([np.diag(e) for e in extra])
    start.variances = start.variances + extra
    return start


def _umap_embedding(
    z: np.ndarray, seed: int, n_neighbors: int = 15, n_dims: int = 10
) -> np.ndarray:
    """An ``n_dims``-D UMAP of ``z`` with tight clusters (min_dist 0): the mixture start's
    (10-D) and the choice of K's (2-D)."""
    import umap

    n_neighbors = int(min(n_neighbors, max(2, z.shape[0] - 1)))
    reducer = umap.UMAP(
        n_components=min(n_dims, max(2, z.shape[0] - 2)),
        n_neighbors=n_neighbors,
        min_dist=0.0,
        random_state=seed,
        n_jobs=1,
    )
    return reducer.fit_transform(z)
