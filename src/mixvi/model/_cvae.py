"""The conditional variational autoencoder model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from ._base import register_anndata
from ._reference import ReferenceMappingMixin
from ._vae import VAE


class CVAE(ReferenceMappingMixin, VAE):
    """Conditional VAE: condition categories go one-hot into the encoder and the decoder.

    Decoding a cell's latent under another condition gives a counterfactual
    (:meth:`decode_counterfactual`), and decoding prior samples under a chosen condition
    gives class-conditional generation (:meth:`generate`). New query data can be mapped
    onto a trained reference with :meth:`load_query_data` (scArches).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent, n_hidden, n_layers, likelihood, n_samples, dropout_rate, use_batch_norm, learn_scale, input_dropout_rate
        As in :class:`~mixvi.model.VAE`.

    Examples
    --------
    >>> mixvi.model.CVAE.setup_anndata(adata, layer="counts", condition_key="condition")
    >>> model = mixvi.model.CVAE(adata, likelihood="nb")
    >>> model.train()
    >>> model.write_results(adata)  # adata.obsm["X_cvae"]
    >>> stimulated = model.decode_counterfactual(condition="stimulated")
    """

    _latent_key = "X_cvae"

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        condition_key: str,
        categorical_covariate_keys: list[str] | None = None,
        layer: str | None = None,
        **kwargs,
    ) -> None:
        """Register ``adata`` and its condition covariate.

        Parameters
        ----------
        adata
            AnnData with observations in rows.
        condition_key
            Column of ``adata.obs`` holding the condition (e.g. control/stimulated, batch,
            or an image class); fed one-hot to encoder and decoder.
        categorical_covariate_keys
            Further categorical ``adata.obs`` columns fed one-hot to encoder and decoder.
        layer
            Use ``adata.layers[layer]`` instead of ``adata.X``.

        Raises
        ------
        KeyError
            If a named column is not in ``adata.obs``.
        ValueError
            If the data contain NaN or infinite values, or the AnnData is empty.
        """
        if condition_key is None:
            raise ValueError("CVAE needs a condition_key; use VAE for unconditional data.")
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

    @torch.inference_mode()
    def decode_counterfactual(
        self,
        condition: str,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        sample: bool = False,
        seed: int | None = None,
    ) -> np.ndarray:
        """Decode each cell's latent under another condition.

        The latent is the posterior mean of q(z|x, c_observed); it is decoded with the
        one-hot of ``condition`` instead of the cell's own. For count likelihoods, the
        cell's observed library size is kept.

        Parameters
        ----------
        condition
            The condition category to decode under, e.g. ``"stimulated"``.
        adata
            AnnData set up like the training data; defaults to it.
        indices
            Cells to use; all by default.
        batch_size
            Minibatch size.
        sample
            Return one draw from p(x | z, condition) instead of its mean: counterfactual
            counts with the sampling noise of observed ones, so that they can be normalised,
            log-transformed and compared with real cells as those are (a mean has no zeros,
            and ``log1p`` of a mean is not the mean of ``log1p``).
        seed
            Seed of the draws (``sample``); the global random state is left as it was.
            ``None`` draws from torch's global generator.

        Returns
        -------
        Array ``(n_cells, n_vars)`` with the mean of p(x | z, condition): expected counts,
        expected values, or pixel probabilities; or with ``sample``, one draw of each.
        """
        code = self._category_code(REGISTRY_KEYS.BATCH_KEY, condition, "condition")
        if seed is None:
            return self._decode_observed(adata, indices, batch_size, code, sample)
        from mixvi._settings import isolated_seed

        with isolated_seed(seed):
            return self._decode_observed(adata, indices, batch_size, code, sample)
