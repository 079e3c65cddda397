"""The variational autoencoder model."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.model.base import VAEMixin

from mixvi.module import VAEModule
from mixvi.module._likelihoods import Likelihood

from ._base import MixviModel


class VariationalModel(VAEMixin, MixviModel):
    """Shared API of the variational models (VAE, CVAE, GMVAE): sampling and decoding.

    :meth:`get_elbo`, :meth:`get_marginal_ll`, :meth:`get_reconstruction_error` and
    :meth:`get_latent_representation` come from :class:`scvi.model.base.VAEMixin`.
    """

    @property
    def conditions(self) -> list[str]:
        """The condition categories the model knows, in code order (``[]`` without one)."""
        if self.registry_["setup_args"].get("condition_key") is None:
            return []
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
        return list(state.categorical_mapping)

    def _covariate_tensors(
        self, n: int, condition: str | None, covariates: Mapping[str, str] | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Condition codes and extra-covariate codes for ``n`` generated observations."""
        device = self.device
        batch = torch.zeros(n, 1, dtype=torch.long, device=device)
        condition_key = self.registry_["setup_args"].get("condition_key")
        if condition_key is None and condition is not None:
            raise ValueError(f"This {type(self).__name__} was set up without a condition_key.")
        if condition_key is not None:
            if condition is None:
                known = list(
                    self.adata_manager.get_state_registry(
                        REGISTRY_KEYS.BATCH_KEY
                    ).categorical_mapping
                )
                raise ValueError(f"Pass condition=, one of {known} (column {condition_key!r}).")
            batch.fill_(self._category_code(REGISTRY_KEYS.BATCH_KEY, condition, "condition"))
        cat_covs = None
        if REGISTRY_KEYS.CAT_COVS_KEY in self.adata_manager.data_registry:
            state = self.adata_manager.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY)
            covariates = dict(covariates or {})
            unknown = set(covariates) - set(state.field_keys)
            if unknown:
                raise KeyError(
                    f"Unknown covariate(s) {sorted(unknown)}; known: {list(state.field_keys)}."
                )
            codes = []
            for key in state.field_keys:
                cats = list(state.mappings[key])
                value = covariates.get(key, cats[0])
                if value not in cats:
                    raise ValueError(f"Unknown category {value!r} of {key!r}; known: {cats}.")
                codes.append(cats.index(value))
            cat_covs = torch.tensor(codes, device=device).expand(n, -1).clone()
        return batch, cat_covs

    @torch.inference_mode()
    def generate(
        self,
        n: int,
        condition: str | None = None,
        covariates: Mapping[str, str] | None = None,
        library_size: float | None = None,
        sample: bool = False,
        seed: int | None = None,
    ) -> np.ndarray:
        """Draw z from the prior and decode it.

        Parameters
        ----------
        n
            Number of observations to generate.
        condition
            Condition category to decode under (conditional models).
        covariates
            Category of each extra categorical covariate; the first category by default.
        library_size
            Total count of generated cells (count likelihoods); the median of the training
            data by default.
        sample
            Return draws from p(x|z) instead of its mean.
        seed
            Seed for the draws.

        Returns
        -------
        Array of shape ``(n, n_vars)``: means of p(x|z) (e.g. pixel probabilities), or draws.
        """
        return self._generate(n, condition, covariates, library_size, sample, seed)

    def _generate(
        self,
        n: int,
        condition: str | None,
        covariates: Mapping[str, str] | None,
        library_size: float | None,
        sample: bool,
        seed: int | None,
        **prior,
    ) -> np.ndarray:
        """Draw ``n`` z from the prior with a generator of their own, and decode them.

        ``prior`` holds the model's options of the draw (the GMVAE's component).
        """
        generator = torch.Generator(device="cpu")
        if seed is not None:
            generator.manual_seed(seed)
        z = self._sample_prior(n, generator, **prior)
        return self._decode(z, condition, covariates, library_size, sample)

    def _sample_prior(self, n: int, generator: torch.Generator, **kwargs) -> torch.Tensor:
        return torch.randn(n, self.module.n_latent, generator=generator).to(self.device)

    def _decode(
        self,
        z: torch.Tensor,
        condition: str | None,
        covariates: Mapping[str, str] | None,
        library_size: float | None,
        sample: bool,
    ) -> np.ndarray:
        self.module.eval()
        batch, cat_covs = self._covariate_tensors(z.shape[0], condition, covariates)
        library = None
        if self.module.is_count:
            size = self._median_library_size() if library_size is None else library_size
            library = torch.full((z.shape[0], 1), float(size), device=self.device)
        px = self.module.generative(z, library, batch, cat_covs)["px"]
        return (px.sample() if sample else px.mean).cpu().numpy()


class VAE(VariationalModel):
    """Variational autoencoder on AnnData.

    q(z|x) is a diagonal Gaussian (the encoder outputs mean and log-variance), p(z) is
    N(0, I), and training minimises minus the ELBO with ``n_samples`` draws of z per cell.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Latent dimension.
    n_hidden
        Width of the hidden layers.
    n_layers
        Hidden layers in the encoder and in the decoder (``0``: linear maps).
    likelihood
        ``"normal"`` (scaled or log data), ``"bernoulli"`` (values in [0, 1], images),
        ``"nb"``, ``"zinb"`` or ``"poisson"`` (raw counts, with the observed library size).
    n_samples
        Monte Carlo draws of z per cell in the training loss.
    dropout_rate
        Dropout in the encoder's hidden layers.
    use_batch_norm
        Batch normalisation in the hidden layers.
    learn_scale
        For the normal likelihood: learn a per-feature scale.
    input_dropout_rate
        Fraction of input features masked to zero for the encoder while training
        (denoising, see :class:`~mixvi.module.AutoencoderBase`); ``0`` turns it off.

    Examples
    --------
    >>> import mixvi, scanpy as sc
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> mixvi.model.VAE.setup_anndata(adata)
    >>> model = mixvi.model.VAE(adata, likelihood="normal")
    >>> model.train(max_epochs=50)
    >>> model.write_results(adata)  # adata.obsm["X_vae"]
    >>> sc.pp.neighbors(adata, use_rep="X_vae")
    """

    _module_cls = VAEModule
    _latent_key = "X_vae"

    def __init__(
        self,
        adata: AnnData | None = None,
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        likelihood: Likelihood = "normal",
        n_samples: int = 1,
        dropout_rate: float = 0.1,
        use_batch_norm: bool = True,
        learn_scale: bool = True,
        input_dropout_rate: float = 0.0,
    ) -> None:
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
        )
        self.init_params_ = self._get_init_params(locals())
