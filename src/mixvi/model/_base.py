"""What every mixvi model shares: registration, construction, training defaults, results."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalJointObsField, CategoricalObsField, LayerField
from scvi.model._utils import get_max_epochs_heuristic
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from mixvi._paths import output_path, plain_name
from mixvi._settings import quiet_lightning
from mixvi.module._likelihoods import Likelihood, check_likelihood

from ._guard import NonFiniteLossError, TrainingGuard
from ._minibatches import INFERENCE_BATCH_SIZE, InMemoryDataSplitter, RowIndexField, choose_loader
from ._training_plan import MixviTrainingPlan
from ._validation import row_sums, validate_for_likelihood, validate_for_setup

logger = logging.getLogger("mixvi")


def register_anndata(
    cls: type[BaseModelClass],
    adata: AnnData,
    setup_method_args: dict,
    layer: str | None = None,
    condition_key: str | None = None,
    categorical_covariate_keys: Sequence[str] | None = None,
    row_index: bool = False,
    **kwargs,
) -> None:
    """Validate ``adata`` and register its fields with scvi-tools.

    The checks run first, so a failed call leaves ``adata`` untouched. The condition is
    registered as scvi-tools' batch field so that reference mapping (scArches) can extend
    its categories. ``row_index`` adds :class:`RowIndexField`.
    """
    keys = [condition_key, *(categorical_covariate_keys or [])]
    validate_for_setup(adata, layer, keys)
    fields = [
        LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
        CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, condition_key),
        CategoricalJointObsField(REGISTRY_KEYS.CAT_COVS_KEY, categorical_covariate_keys),
    ]
    if row_index:
        fields.append(RowIndexField())
    manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
    manager.register_fields(adata, **kwargs)
    cls.register_manager(manager)


def median_library_size(manager: AnnDataManager) -> float:
    """The median over cells of the registered data's row sums (their library sizes)."""
    return float(np.median(row_sums(manager.get_from_registry(REGISTRY_KEYS.X_KEY))))


class MixviModel(UnsupervisedTrainingMixin, BaseModelClass):
    """Base class of mixvi's models; not used directly.

    Subclasses set ``_module_cls`` and ``_latent_key`` (the ``adata.obsm`` key that
    :meth:`write_results` fills).
    """

    _latent_key: ClassVar[str] = "X_mixvi"
    _training_plan_cls = MixviTrainingPlan

    def __init__(
        self,
        adata: AnnData | None = None,
        likelihood: Likelihood = "normal",
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        **module_kwargs,
    ) -> None:
        super().__init__(adata)
        check_likelihood(likelihood)
        layer = self.registry_["setup_args"].get("layer")
        validate_for_likelihood(self.adata, layer, likelihood)
        n_cats_per_cov = (
            self.adata_manager.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY).n_cats_per_key
            if REGISTRY_KEYS.CAT_COVS_KEY in self.adata_manager.data_registry
            else None
        )
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_batch=self.summary_stats.n_batch,
            n_cats_per_cov=n_cats_per_cov,
            likelihood=likelihood,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            **module_kwargs,
        )
        self._model_summary_string = (
            f"{type(self).__name__}: likelihood={likelihood}, n_latent={n_latent}, "
            f"n_hidden={n_hidden}, n_layers={n_layers}, n_conditions={self.summary_stats.n_batch}"
        )
        # each concrete class records its own init params (its own signature) for save/load

    @classmethod
    def setup_anndata(cls, adata: AnnData, layer: str | None = None, **kwargs) -> None:
        """Register ``adata`` for the model.

        Parameters
        ----------
        adata
            AnnData with observations in rows.
        layer
            Use ``adata.layers[layer]`` (e.g. raw counts) instead of ``adata.X``.

        Raises
        ------
        ValueError
            If the data contain NaN or infinite values, or the AnnData is empty.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        register_anndata(cls, adata, setup_method_args, layer=layer, **kwargs)

    def train(
        self,
        max_epochs: int | None = None,
        lr: float = 1e-3,
        batch_size: int = 128,
        kl_warmup_epochs: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        early_stopping: bool = False,
        loader: Literal["auto", "device", "anndata"] = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the model with Lightning (on a GPU when there is one).

        Parameters
        ----------
        max_epochs
            Number of passes through the data. Defaults to scvi-tools' heuristic
            (400 epochs up to 20,000 cells, fewer above).
        lr
            Adam learning rate.
        batch_size
            Minibatch size.
        kl_warmup_epochs
            Epochs over which the KL weight rises linearly from 0 to 1. Defaults to a
            quarter of ``max_epochs``, so that short runs still end at the full ELBO
            (scvi-tools' default of 400 epochs would not). Ignored by :class:`AE`.
        accelerator, devices
            Passed to Lightning; ``"auto"`` picks a GPU when one is available.
        train_size
            Fraction of cells used for training; the rest gives validation metrics.
        early_stopping
            Stop when the validation ELBO stops improving.
        loader
            How minibatches reach the model. ``"device"``: the registered data are put on
            the training device once (GPU memory, or RAM on the CPU) and each minibatch is
            an index into them (scvi-tools' :class:`~scvi.dataloaders.DeviceBackedDataSplitter`),
            which removes the per-batch copy from the AnnData. ``"anndata"``: scvi-tools'
            usual loader, which reads each minibatch from the AnnData (needed for backed
            ``.h5ad`` files, data larger than memory and multi-process training). ``"auto"``
            (default) picks ``"device"`` when the dense data take at most a quarter of the
            device's free memory and training is single-process, ``"anndata"`` otherwise.
        plan_kwargs
            Extra arguments for :class:`scvi.train.TrainingPlan` (they take precedence). A
            query model from ``load_query_data`` trains with ``weight_decay=0`` unless
            they say otherwise.
        **trainer_kwargs
            Extra arguments for :class:`scvi.train.Trainer`.
        """
        if self.adata.n_obs < 2:
            raise ValueError(
                f"Training needs at least 2 observations (minibatch statistics, a train/validation "
                f"split); this AnnData has {self.adata.n_obs}. A trained model can still encode a single cell."
            )
        if max_epochs is None:
            max_epochs = get_max_epochs_heuristic(self.adata.n_obs)
        if kl_warmup_epochs is None:
            kl_warmup_epochs = max_epochs // 4
        plan = {
            "lr": lr,
            "n_epochs_kl_warmup": kl_warmup_epochs,
            **getattr(self, "_plan_defaults", {}),
            **(plan_kwargs or {}),
        }
        if plan.get("reduce_lr_on_plateau") and train_size == 1.0:
            raise ValueError(
                "reduce_lr_on_plateau follows a validation metric, and train_size=1.0 leaves no "
                "validation cells; use train_size < 1 (e.g. 0.9) or plan_kwargs={'lr_schedule': 'cosine'}."
            )
        if self._resolve_loader(loader, accelerator, devices, trainer_kwargs) == "device":
            trainer_kwargs["datamodule"] = InMemoryDataSplitter(
                self.adata_manager,
                train_size=train_size,
                accelerator=accelerator,
                device=devices,
                batch_size=batch_size,
                shuffle=True,
            )
        guard = TrainingGuard()
        trainer_kwargs["callbacks"] = [*(trainer_kwargs.get("callbacks") or []), guard]
        try:
            with quiet_lightning():
                return super().train(
                    max_epochs=max_epochs,
                    accelerator=accelerator,
                    devices=devices,
                    train_size=train_size,
                    batch_size=batch_size,
                    early_stopping=early_stopping,
                    plan_kwargs=plan,
                    **trainer_kwargs,
                )
        except (NonFiniteLossError, ValueError) as raised:
            error = guard.as_non_finite(raised)
            if error is None:
                raise
            guard.restore(self.module)
            likelihood = getattr(self.module, "likelihood", "?")
            hint = (
                f"The model holds the weights from the end of epoch {guard.good_epoch}. Likely causes: "
                f"a learning rate that is too high (lr={plan['lr']}; try a tenth), or a likelihood that "
                f"does not suit the data (likelihood={likelihood!r}: 'normal' for scaled or log data, "
                "'nb' for raw counts, 'bernoulli' for values in [0, 1])."
            )
            raise NonFiniteLossError(error.value, error.epoch, error.step, hint) from None
        except (KeyboardInterrupt, SystemExit) as interrupt:
            # Lightning turns Ctrl+C into sys.exit(1) and ignores further SIGINTs; undo both.
            if isinstance(interrupt, SystemExit) and not guard.interrupted:
                raise
            signal.signal(signal.SIGINT, signal.default_int_handler)
            guard.restore(self.module)
            self.module.eval()
            if guard.good_epoch > 0:
                self.is_trained_ = True
            logger.warning(
                "Training interrupted; the model holds the weights from the end of epoch %d.",
                guard.good_epoch,
            )
            raise KeyboardInterrupt(
                f"training interrupted after {guard.good_epoch} complete epoch(s)"
            ) from None

    def save(
        self,
        dir_path: str,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        **kwargs,
    ) -> None:
        """Save the model (weights, registry and attributes) to ``dir_path``.

        Parameters
        ----------
        dir_path
            Directory to create (or reuse with ``overwrite=True``).
        prefix
            File-name prefix of the saved files; a plain name, without directories.
        overwrite
            Write into an existing directory, replacing the files.
        save_anndata
            Also write the registered AnnData as ``adata.h5ad``.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.save`.

        Raises
        ------
        mixvi.PathOutsideDirectoryError
            If ``prefix`` has directories in it, or a file to write already exists as a link
            that leads out of ``dir_path``.
        """
        file_prefix = plain_name(prefix or "", "prefix")
        for name in ["model.pt"] + (["adata.h5ad"] if save_anndata else []):
            output_path(dir_path, file_prefix + name)
        super().save(
            dir_path, prefix=prefix, overwrite=overwrite, save_anndata=save_anndata, **kwargs
        )

    def _get_user_attributes(self):
        # What save() writes (and reference mapping copies): the history tables as plain
        # arrays, so that a model file never depends on pandas' pickling internals.
        from ._safe_load import plain_tables

        return [(name, plain_tables(value)) for name, value in super()._get_user_attributes()]

    def _restore_tables(self):
        """Turn the tables that :meth:`_get_user_attributes` stored as arrays back into DataFrames."""
        from ._safe_load import restore_tables

        for name, value in list(vars(self).items()):
            if name.endswith("_"):
                setattr(self, name, restore_tables(value))
        return self

    @classmethod
    def load(
        cls,
        dir_path: str,
        adata: AnnData | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
        backup_url: str | None = None,
        backup_sha256: str | None = None,
        **kwargs,
    ):
        """Load a model saved with :meth:`save`, refusing files that could run code.

        The file is first opened with ``torch.load(weights_only=True)`` and an allowlist of
        the types a saved model holds (see :mod:`mixvi.model._safe_load`); only then does
        scvi-tools read it.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            AnnData to attach (its ``var_names`` must match); the saved one by default.
        accelerator, device
            Where to put the model.
        prefix
            File-name prefix used when saving.
        backup_url
            URL to fetch ``model.pt`` from when it is not in ``dir_path``; the downloaded
            file goes through the same check.
        backup_sha256
            SHA-256 of the file at ``backup_url``; a download that does not match is deleted
            and refused. Without it the download is only checked by the safe loader, and a
            warning says so.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load`.

        Raises
        ------
        UnsafeModelFileError
            If the file would need anything beyond tensors, arrays and tables.
        CorruptModelFileError
            If the directory is missing its model file, or the file is truncated.
        ValueError
            If ``adata.var_names`` differ from the training data's (scvi-tools only warns,
            and a different order would silently mix features up).
        """
        from ._safe_load import check_model_file, check_var_names, model_file

        path = model_file(dir_path, prefix)
        if backup_url is not None and not os.path.isfile(path):
            import pooch

            if backup_sha256 is None:
                logger.warning("Downloading %s without a SHA-256 to check it against.", backup_url)
            pooch.retrieve(
                backup_url,
                known_hash=None if backup_sha256 is None else f"sha256:{backup_sha256}",
                fname=os.path.basename(path),
                path=dir_path,
            )
        saved = check_model_file(dir_path, prefix)
        if adata is not None:
            check_var_names(np.asarray(saved["var_names"]).astype(str), adata)
        model = super().load(
            dir_path, adata=adata, accelerator=accelerator, device=device, prefix=prefix, **kwargs
        )
        return model._restore_tables()

    def _resolve_loader(self, loader: str, accelerator: str, devices, trainer_kwargs: dict) -> str:
        """``"device"`` or ``"anndata"`` for :meth:`train`'s ``loader`` argument (see :func:`choose_loader`)."""
        return choose_loader(
            loader, self.adata, self.summary_stats.n_vars, accelerator, devices, trainer_kwargs
        )

    def _make_data_loader(
        self, adata, indices=None, batch_size: int | None = None, *args, **kwargs
    ):
        # Inference needs no small minibatches: large ones amortise the per-batch overhead.
        return super()._make_data_loader(
            adata, indices, batch_size or INFERENCE_BATCH_SIZE, *args, **kwargs
        )

    def write_results(
        self,
        adata: AnnData | None = None,
        batch_size: int | None = None,
        key_added: str | None = None,
    ) -> AnnData:
        """Write the model's results into ``adata`` (default: the AnnData it was trained on).

        Writes the latent representation (posterior means for variational models) to
        ``adata.obsm``, ready for ``sc.pp.neighbors(adata, use_rep="X_vae")``.

        Parameters
        ----------
        adata
            AnnData with the same features as the training data.
        batch_size
            Minibatch size for the forward pass.
        key_added
            The latent goes to ``obsm[f"X_{key_added}"]``; by default the model's name in
            lower case (``"X_vae"``, ``"X_cvae"``, ``"X_ae"``).

        Returns
        -------
        The AnnData that was written to.
        """
        target = self.adata if adata is None else adata
        key = self._latent_key if key_added is None else f"X_{key_added}"
        target.obsm[key] = self.get_latent_representation(target, batch_size=batch_size)
        return target

    @torch.inference_mode()
    def reconstruct(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Mean of p(x|z) at each observation's latent (posterior mean, or the AE's code).

        Returns
        -------
        Array ``(n_obs, n_vars)``: expected counts, expected values or pixel probabilities.
        """
        return self._decode_observed(adata, indices, batch_size)

    # -- helpers for subclasses ------------------------------------------------------------
    def _map_minibatches(
        self,
        fn,
        adata: AnnData | None,
        indices: Sequence[int] | None,
        batch_size: int | None,
    ) -> np.ndarray:
        """Apply ``fn(inference_inputs, inference_outputs)`` to each minibatch and stack.

        ``fn`` returns a tensor, or a tuple of tensors (then a tuple of arrays comes back), so
        that several results share one encoder pass.
        """
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        out = []
        for tensors in loader:
            inputs = self.module._get_inference_input(tensors)
            result = fn(inputs, self.module.inference(**inputs))
            out.append(
                tuple(r.cpu() for r in result) if isinstance(result, tuple) else result.cpu()
            )
        if out and isinstance(out[0], tuple):
            return tuple(torch.cat(parts).numpy() for parts in zip(*out, strict=True))
        return torch.cat(out).numpy()

    def _decode_observed(
        self,
        adata: AnnData | None,
        indices: Sequence[int] | None,
        batch_size: int | None,
        condition_code: int | None = None,
        sample: bool = False,
    ) -> np.ndarray:
        """Encode observations, then decode their latent (under another condition if given).

        The mean of p(x|z), or with ``sample`` one draw from it.
        """

        def decode(inputs: dict, inference: dict) -> torch.Tensor:
            z = inference["qz"].loc if "qz" in inference else inference["z"]
            batch = inputs["batch_index"]
            if condition_code is not None:
                batch = torch.full_like(batch, condition_code)
            px = self.module.generative(z, inference["library"], batch, inputs["cat_covs"])["px"]
            return px.sample() if sample else px.mean

        return self._map_minibatches(decode, adata, indices, batch_size)

    def _category_code(self, registry_key: str, value: str, what: str) -> int:
        """The integer code of category ``value`` of a registered categorical field."""
        mapping = list(self.adata_manager.get_state_registry(registry_key).categorical_mapping)
        if value not in mapping:
            raise ValueError(f"Unknown {what} {value!r}; the model knows {mapping}.")
        return mapping.index(value)

    def _median_library_size(self) -> float:
        return median_library_size(self.adata_manager)
