"""The Gaussian-mixture VAE model: a latent space and clusters from one model."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from mixvi._settings import settings
from mixvi.module import GMVAEModule
from mixvi.module._likelihoods import Likelihood
from mixvi.module._prior import Covariance, check_covariance

from ._base import register_anndata
from ._clusters import MixtureResultsMixin
from ._defaults import default_start, network_defaults, pretraining_mode
from ._mixture_start import Init, check_start, input_pcs, mixture_start
from ._n_components import ChooseKMixin
from ._phases import PHASES, PROGRESS, history_lengths, history_since, plan_epochs, timed
from ._reference import ReferenceMappingMixin
from ._vae import VariationalModel
from ._validation import warn_small_conditions

logger = logging.getLogger("mixvi")


class GMVAE(ChooseKMixin, MixtureResultsMixin, ReferenceMappingMixin, VariationalModel):
    """Gaussian-mixture VAE for clustering :cite:p:`Jiang2017`.

    p(c) = softmax(logits), p(z|c) = N(μ_c, Σ_c), q(z|x) a diagonal Gaussian and
    q(c|x) = p(c|z) (:class:`~mixvi.module.MixturePrior`). Mixture VAEs trained from a random
    prior collapse, so the model is fitted in four phases; :meth:`train` runs those not yet
    run, and each is also a method of its own:

    1. :meth:`pretrain`: encoder and decoder as an autoencoder, or, with a condition or
       covariates, as a conditional VAE, whose KL makes the latent drop what the decoder is
       given (an autoencoder's clusters would follow the condition);
    2. :meth:`init_mixture`: π, μ and Σ from a clustering of the pretrained latent (by
       default a Gaussian mixture on a UMAP of it, as N2D :cite:p:`McConville2021` clusters);
    3. :meth:`train_anchored`: the ELBO with q(c|x) fixed to that clustering, so that the
       encoder makes its clusters Gaussian;
    4. free training of the ELBO, with q(c|x) = p(c|z). Labels are never used.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_components
        Number of mixture components K, or ``"auto"``: K is chosen among ``k_range`` by
        :meth:`choose_n_components` (no labels), which :meth:`train` calls first (with a
        selection pretraining as long as its ``pretrain_epochs``); the chosen K is what
        :meth:`save` records.
    n_latent
        Dimension of the latent space. ``None`` (the default): ``50`` for counts without a
        condition or covariates, ``10`` otherwise. Linear maps keep only what the latent
        has room for, as PCA-50 does: with 10 dimensions the few marker genes of small
        types are dropped and their clusters merge. A deep network needs fewer.
    n_hidden, likelihood, n_samples, dropout_rate, use_batch_norm, learn_scale, input_dropout_rate
        As in :class:`~mixvi.model.VAE`.
    n_layers
        Hidden layers of the encoder and of the decoder. ``None`` (the default): ``0`` for
        counts (``"nb"``, ``"zinb"``, ``"poisson"``) without a condition or covariates, ``2``
        otherwise. With no hidden layer the encoder and decoder are linear maps, as a PCA
        is; on counts they cluster better than deeper networks, which fit the noise of a few
        thousand cells. A condition needs hidden layers: its effect on log counts is not
        linear, and linear maps leave it in the latent (see the user guide's "Settings that
        work").
    prior_covariance
        ``"diag"`` (σ_c², as in VaDE :cite:p:`Jiang2017`) or ``"full"`` (Σ_c): full covariances follow clusters
        that lie obliquely to the latent axes; try them when clusters look elongated.
    k_range
        With ``n_components="auto"``: the smallest and largest candidate K.
    normalize_input
        Counts only: the encoder reads each cell scaled to the median library size, then
        ``log1p``, as PCA reads scanpy's ``normalize_total`` and ``log1p``; otherwise
        ``log1p`` of the raw counts, as scVI. ``None`` (the default): on for counts without a
        condition or covariates, so that depth does not take up latent dimensions.

    Attributes
    ----------
    phase_
        How far training has come: ``"built"``, ``"pretrained"``, ``"started"``,
        ``"anchored"`` or ``"trained"``.
    pretrain_history_, anchor_history_
        The history tables of the pretraining and anchored phases alone.
    phase_seconds_
        Seconds of each phase (``"umap"`` is part of ``"mixture_start"``) since :meth:`train`.
    n_components_choice_
        With ``n_components="auto"``, once chosen: :meth:`compare_n_components`' table.

    Examples
    --------
    >>> adata = mixvi.data.pbmc68k_reduced()
    >>> mixvi.model.GMVAE.setup_anndata(adata)
    >>> model = mixvi.model.GMVAE(adata, n_components=10)
    >>> model.train()
    >>> model.write_results(adata)  # obsm["X_gmvae"], obs["gmvae_cluster"], obsm["gmvae_probabilities"]
    """

    _module_cls = GMVAEModule
    _latent_key = "X_gmvae"

    def __init__(
        self,
        adata: AnnData | None = None,
        n_components: int | Literal["auto"] = 10,
        n_latent: int | None = None,
        n_hidden: int = 256,
        n_layers: int | None = None,
        likelihood: Likelihood = "normal",
        n_samples: int = 1,
        dropout_rate: float = 0.0,
        use_batch_norm: bool = True,
        learn_scale: bool = True,
        input_dropout_rate: float = 0.0,
        prior_covariance: Covariance = "diag",
        k_range: tuple[int, int] = (2, 20),
        normalize_input: bool | None = None,
    ) -> None:
        from ._n_components import k_range_candidates

        check_covariance(prior_covariance)
        candidates = None
        if isinstance(n_components, str):
            if n_components != "auto":
                raise ValueError(
                    f"n_components must be an integer or 'auto', got {n_components!r}."
                )
            if adata is None:
                raise ValueError("n_components='auto' needs the AnnData to choose K on.")
            low, high = k_range
            candidates = k_range_candidates(low, high, adata.n_obs, f"k_range={tuple(k_range)}")
        k = candidates[0] if candidates else n_components
        # what the caller named: choosing K builds its selection VAE from these alone
        named = {"n_latent": n_latent, "n_layers": n_layers, "normalize_input": normalize_input}
        self._network_given = {key: value for key, value in named.items() if value is not None}
        manager = (
            None if adata is None else self._get_most_recent_anndata_manager(adata, required=True)
        )
        n_layers, n_latent, library_target = network_defaults(
            manager, likelihood, n_layers, n_latent, normalize_input
        )
        if adata is not None and k > adata.n_obs:
            raise ValueError(
                f"n_components={k} is larger than the number of observations ({adata.n_obs})."
            )
        super().__init__(
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
            n_components=k,
            covariance=prior_covariance,
            library_target=library_target,
        )
        self._model_summary_string += (
            f", n_components={n_components!r}, prior_covariance={prior_covariance!r}, "
            f"normalize_input={library_target is not None}"
        )
        self.init_params_ = self._get_init_params(locals())
        self.k_candidates_ = candidates  # None once K is known
        self.n_components_choice_ = None
        self.phase_ = "built"
        self.pretraining_: str | None = None
        self.start_responsibilities_: np.ndarray | None = None
        self.start_init_: str | None = None
        self.phase_seconds_ = dict.fromkeys(PHASES, 0.0)
        if candidates is None:
            self._warn_small_conditions(k)

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

        Conditions go one-hot into encoder and decoder, so that clusters follow cell type.

        Parameters
        ----------
        adata
            AnnData with observations in rows.
        layer
            Use ``adata.layers[layer]`` (e.g. raw counts) instead of ``adata.X``.
        condition_key
            Optional ``adata.obs`` column of the condition (batch, sample, stimulation).
        categorical_covariate_keys
            Further categorical ``adata.obs`` columns fed one-hot.
        **kwargs
            Passed to scvi-tools' field registration.
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

    # -- the phases ------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        pretrain_epochs: int | None = None,
        anchor_epochs: int | None = None,
        init: Literal["auto", "umap", "leiden", "pca", "gmm", "kmeans"] | None = "auto",
        start_kwargs: Mapping | None = None,
        pretraining: Literal["auto", "ae", "vae"] = "auto",
        kl_warmup_epochs: int | None = 0,
        **kwargs,
    ) -> None:
        """Run the phases not run yet: pretraining, mixture start, anchored, free training.

        A model whose phases were run one at a time (:meth:`pretrain`, :meth:`init_mixture`,
        :meth:`train_anchored`) continues from there; a trained model trains free epochs.

        Parameters
        ----------
        max_epochs
            All epochs of this call, over every phase it runs; scvi-tools' heuristic by
            default (400 up to 20,000 cells, fewer above).
        pretrain_epochs
            Of those, the pretraining's; a third by default. ``0`` skips pretraining (then
            the start clusters an untrained encoder's latent).
        anchor_epochs
            Of those, the anchored phase's; by default a quarter of the epochs after
            pretraining, and none after a ``"gmm"`` start, which is already a Gaussian
            mixture in the latent.
        init
            How the mixture starts (see :meth:`init_mixture`). ``"auto"`` takes ``"gmm"``
            after a VAE pretraining, whose latent is already Gaussian blobs; after an
            autoencoder pretraining, whose clusters are curved, ``"pca"`` on counts with
            no condition and ``"umap"`` on other data. ``None`` keeps the prior as it is,
            which collapses unless you set it yourself.
        start_kwargs
            Further arguments of :meth:`init_mixture` (``restarts``, ``umap_neighbors``,
            ``umap_cells``, ``seed``, ...).
        pretraining
            ``"ae"``, ``"vae"`` or ``"auto"`` (see :meth:`pretrain`).
        kl_warmup_epochs
            KL warm-up epochs of the free phase; none by default, since the start already
            gives the decoder a useful latent.
        **kwargs
            As in :meth:`mixvi.model.VAE.train` (``lr``, ``batch_size``, ``accelerator``,
            ``plan_kwargs``, ...); they apply to every phase.

        Raises
        ------
        ValueError
            Before any training, for a bad start or epochs that do not add up.
        """
        from scvi.model._utils import get_max_epochs_heuristic

        mode = pretraining_mode(self.adata_manager, pretraining)
        start_kwargs = dict(start_kwargs or {})
        if init == "auto":
            init = default_start(self.adata_manager, self.module.likelihood, mode)
        if init is not None:
            check_start(
                init, start_kwargs.get("umap_neighbors", 15), start_kwargs.get("umap_cells")
            )
        total = get_max_epochs_heuristic(self.adata.n_obs) if max_epochs is None else max_epochs
        plan = plan_epochs(
            total, self.phase_, pretrain_epochs, anchor_epochs, init, self.start_init_
        )
        self.phase_seconds_ = dict.fromkeys(PHASES, 0.0)
        if self.k_candidates_ is not None:  # n_components="auto", before the prior is used
            self.choose_n_components(selection_epochs=plan.pretraining or None, train_kwargs=kwargs)
        if self.phase_ == "built":
            if plan.pretraining > 0:
                self.pretrain(plan.pretraining, mode, **kwargs)
            else:
                self.pretraining_, self.phase_ = "none", "pretrained"
        if plan.starts:
            self.init_mixture(init, **start_kwargs)
        if plan.anchored > 0:
            self.train_anchored(plan.anchored, **kwargs)
        if plan.free > 0:
            self._train_phase(
                "free", plan.free, "free", kl_warmup_epochs=kl_warmup_epochs, **kwargs
            )
            self.phase_ = "trained"

    def pretrain(
        self,
        max_epochs: int,
        mode: Literal["auto", "ae", "vae"] = "auto",
        kl_warmup_epochs: int | None = None,
        **kwargs,
    ) -> None:
        """Phase 1: train encoder and decoder without the mixture.

        Parameters
        ----------
        max_epochs
            Pretraining epochs. More give a better-separated latent on large data.
        mode
            ``"ae"``: an autoencoder, the reconstruction of the posterior mean, as VaDE and N2D pretrain.
            ``"vae"``: a VAE with the standard normal prior (a conditional VAE when the model
            has a condition). ``"auto"`` takes ``"vae"`` when the model has a condition or
            covariates and ``"ae"`` otherwise: an autoencoder keeps in its latent what its
            decoder is also told, so a mixture started there would cluster by condition.
        kl_warmup_epochs
            KL warm-up of the ``"vae"`` pretraining; a quarter of ``max_epochs`` by default.
        **kwargs
            As in :meth:`mixvi.model.VAE.train`.
        """
        if PROGRESS.index(self.phase_) > 1:
            raise ValueError(
                "The mixture has started: pretraining now would move the latent away from it. "
                "Build a new model to pretrain again."
            )
        mode = pretraining_mode(self.adata_manager, mode)
        before = history_lengths(self.history_)
        self._train_phase(
            mode, max_epochs, "pretraining", kl_warmup_epochs=kl_warmup_epochs, **kwargs
        )
        self.pretraining_, self.phase_ = mode, "pretrained"
        self.pretrain_history_ = history_since(self.history_, before)

    def init_mixture(
        self,
        init: Init = "umap",
        restarts: int = 5,
        umap_neighbors: int = 15,
        umap_cells: int | None = None,
        placement_neighbors: int = 15,
        seed: int | None = None,
        posterior_variance: bool | None = None,
    ) -> np.ndarray:
        """Phase 2: start π, μ and Σ from a clustering of the latent means; no labels.

        Parameters
        ----------
        init
            ``"umap"``: a Gaussian mixture on a UMAP of the latent means, whose clusters'
            moments in the latent set the prior; suits an autoencoder's curved clusters.
            ``"leiden"``: Leiden at K on the latent's neighbour graph, as scanpy users
            cluster. ``"pca"``: Leiden at K on PCA-50 of what the encoder reads (the scanpy
            pipeline's clusters), which no pretraining seed changes. ``"gmm"``: a Gaussian
            mixture on the latent means; suits a VAE's latent. ``"kmeans"``: k-means on the
            latent means; fast, but equal spheres. See :func:`~mixvi.model.mixture_start`.
        restarts
            Restarts of the Gaussian mixture or of k-means; the best fit is kept.
        umap_neighbors
            ``n_neighbors`` of the UMAP or of the Leiden graph: raise it (e.g. 50) when
            look-alike subclusters split.
        umap_cells
            Fit the UMAP on at most this many random cells; the others are placed by their
            ``placement_neighbors`` nearest fitted cells. For large data, where UMAP's time
            dominates the fit.
        placement_neighbors
            See ``umap_cells``.
        seed
            Random state of the clustering (default: ``mixvi.settings.seed``).
        posterior_variance
            Add each component's mean posterior variance to its σ², so that the components
            match the aggregate posterior rather than the spread of the means alone. By
            default, when the model was pretrained as a VAE (an autoencoder's posterior
            variances are untrained).

        Returns
        -------
        The start's responsibilities, shape ``(n_obs, n_components)``.

        Raises
        ------
        ValueError
            If the model has not been pretrained, or for a bad argument.
        """
        if self.phase_ == "built":
            raise ValueError(
                "init_mixture clusters the pretrained latent: call pretrain() first (or train())."
            )
        check_start(init, umap_neighbors, umap_cells)
        if self.k_candidates_ is not None:
            self.choose_n_components()
        if posterior_variance is None:
            posterior_variance = self.pretraining_ == "vae"
        with timed(self.phase_seconds_, "mixture_start"):
            z, z_var = self.get_latent_representation(return_dist=True)
            seed = settings.seed if seed is None else seed
            pcs = None
            if init == "pca":  # the encoder's input, as scanpy's pipeline reads it
                x = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
                pcs = input_pcs(x, self.module.library_target, self.module.is_count, seed=seed)
            start = mixture_start(
                z,
                self.module.n_components,
                init,
                restarts,
                umap_neighbors,
                seed,
                z_var=z_var if posterior_variance else None,
                covariance=self.module.covariance,
                umap_cells=umap_cells,
                placement_neighbors=placement_neighbors,
                input_pcs=pcs,
            )
            logger.info("%s start: log-likelihood per cell %.3f", init, start.log_likelihood)
            self.module.prior.set(start.weights, start.means, start.variances)
        self.phase_seconds_["umap"] += start.umap_seconds
        self.start_responsibilities_ = start.responsibilities
        self.start_init_, self.phase_ = init, "started"
        return start.responsibilities

    def train_anchored(
        self, max_epochs: int, responsibilities: np.ndarray | None = None, **kwargs
    ) -> None:
        """Phase 3: train the ELBO with q(c|x) fixed to the start's responsibilities.

        The encoder then makes the start's clusters Gaussian before p(c|z) takes over.

        Parameters
        ----------
        max_epochs
            Anchored epochs.
        responsibilities
            A fixed q(c|x) of your own, shape ``(n_obs, K)``, instead of the start's (e.g.
            DEC's sharpened target :cite:p:`Xie2016`, for self-training rounds).
        **kwargs
            As in :meth:`mixvi.model.VAE.train`.

        Raises
        ------
        ValueError
            If there is neither a mixture start (:meth:`init_mixture`) nor
            ``responsibilities``, or they have the wrong shape.
        """
        if responsibilities is None:
            responsibilities = self.start_responsibilities_
        if responsibilities is None:
            raise ValueError("The anchored phase needs a mixture start: call init_mixture() first.")
        expected = (self.adata.n_obs, self.module.n_components)
        if np.shape(responsibilities) != expected:
            raise ValueError(
                f"responsibilities must have shape {expected}, got {np.shape(responsibilities)}."
            )
        gamma = torch.as_tensor(np.asarray(responsibilities), dtype=torch.float32)
        before = history_lengths(self.history_)
        self._train_phase(
            "anchored",
            max_epochs,
            "anchored",
            kl_warmup_epochs=0,
            anchor_log_gamma=torch.log(gamma.clamp_min(1e-8)),
            **kwargs,
        )
        self.anchor_history_ = history_since(self.history_, before)
        self.start_responsibilities_ = None  # used up; not written into saved models
        self.phase_ = "anchored"

    def _train_phase(
        self,
        phase: str,
        max_epochs: int,
        timed_as: str,
        anchor_log_gamma: torch.Tensor | None = None,
        **kwargs,
    ) -> None:
        """:meth:`MixviModel.train` with the phase's loss, named in the progress bar."""
        plan = {
            # scvi-tools' Adam eps of 0.01 damps the small gradients of pixel likelihoods
            "eps": 1e-8,
            **(kwargs.pop("plan_kwargs", None) or {}),
            "phase": phase,
            "freeze_batch_norm": phase not in ("ae", "vae"),
            "description": f"GMVAE {timed_as}",
        }
        if anchor_log_gamma is not None:
            plan["anchor_log_gamma"] = anchor_log_gamma
        with timed(self.phase_seconds_, timed_as):
            super().train(max_epochs=max_epochs, plan_kwargs=plan, **kwargs)

    def _warn_small_conditions(self, n_components: int) -> None:
        warn_small_conditions(
            self.adata, self.registry_["setup_args"].get("condition_key"), n_components
        )
