"""scvi-tools' training plan with the per-step bookkeeping moved to the end of the epoch."""

from __future__ import annotations

from typing import Literal

import torch
from scvi.train import TrainingPlan

#: values of the plan's ``lr_schedule``
LR_SCHEDULES = ("constant", "cosine")


class MixviTrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` that logs once per epoch and uses a fused Adam.

    scvi-tools calls Lightning's ``self.log`` several times in every training step and
    updates its :class:`~scvi.train._metrics.ElboMetric` objects there; for the small
    networks of this package that bookkeeping doubled the time per epoch on a GPU. Here
    each step only adds its loss and ELBO terms to one tensor on the device (no host
    synchronisation), and :meth:`on_train_epoch_end` feeds the epoch's sums to scvi-tools'
    ElboMetric objects in one update and logs them. The values in
    ``model.history`` are the same as scvi-tools': ``train_loss`` (the mean loss per cell,
    weighted by minibatch size) and ``elbo_train``, ``reconstruction_loss_train``,
    ``kl_local_train`` and ``kl_global_train``, plus the epoch's ``kl_weight``.

    Adam is the fused implementation where every parameter lives on a CPU or CUDA device:
    one kernel for all parameters instead of a loop over them, with the same update rule.

    Each step runs Lightning's manual optimisation (zero_grad, backward, optimiser step and
    the learning-rate schedule inside :meth:`training_step`), which skips the closure and
    the hooks that Lightning's automatic optimisation wraps around every step; the updates
    are the same. Lightning clips gradients and accumulates minibatches only in its
    automatic loop, so a run with ``gradient_clip_val`` or ``accumulate_grad_batches``
    (Lightning Trainer arguments) falls back to it.

    Parameters
    ----------
    module
        The mixvi module to train.
    fused_optimizer
        Use the fused Adam where every parameter is a float32 tensor on a CPU or CUDA
        device (default); ``False`` gives the loop-over-parameters implementation. The same
        option as scvi-tools' (1.5 and later), honoured under scvi-tools 1.4 too.
    lr_schedule
        ``"constant"`` (default) keeps the learning rate at ``lr``; ``"cosine"`` lowers it
        along half a cosine from ``lr`` to ``lr_min`` over the steps of this training run
        (:class:`torch.optim.lr_scheduler.CosineAnnealingLR`, stepped every minibatch).
        scvi-tools' ``reduce_lr_on_plateau`` is the other schedule; the two exclude each other.
    freeze_batch_norm
        Keep the module's batch-norm layers in eval mode while training, with the running
        statistics they have. The GMVAE's mixture is fitted to latent means computed with
        those statistics; letting minibatch statistics move the encoder after that shifts
        every cell against the fitted components.
    description
        Names the run in scvi-tools' progress bar (``"GMVAE pretraining: epoch 3/20"``);
        by default the bar reads ``"Epoch 3/20"``.
    **kwargs
        See :class:`scvi.train.TrainingPlan`.
    """

    def __init__(
        self,
        module,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        fused_optimizer: bool = True,
        freeze_batch_norm: bool = False,
        description: str | None = None,
        **kwargs,
    ) -> None:
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', not {lr_schedule!r}.")
        if lr_schedule != "constant" and kwargs.get("reduce_lr_on_plateau"):
            raise ValueError(
                "lr_schedule='cosine' and reduce_lr_on_plateau=True each set the learning rate; choose one."
            )
        super().__init__(module, **kwargs)
        # set after scvi-tools' own (1.5 sets it too), which mixvi's optimiser creator replaces
        self.fused_optimizer = bool(fused_optimizer)
        self.lr_schedule = lr_schedule
        self.freeze_batch_norm = bool(freeze_batch_norm)
        self.description = description
        self._reset_sums()

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets _current_fx_name twice around every hook it calls (about 44 times
        # a step); nn.Module.__setattr__ first checks it against the parameter, buffer and
        # submodule registries, which cost a measurable share of a small network's step.
        # A plain string attribute can skip them.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def automatic_optimization(self) -> bool:
        """Whether Lightning runs the optimiser (only for gradient clipping or accumulation)."""
        trainer = self._trainer
        return trainer is not None and (
            bool(trainer.gradient_clip_val) or trainer.accumulate_grad_batches != 1
        )

    def on_fit_start(self) -> None:
        """Put the module in training mode.

        Lightning 2.x keeps whatever mode the module is in, and every inference call
        (``get_latent_representation``, the GMVAE's mixture start) leaves it in eval mode;
        without this, a second ``train()`` would run without dropout, input masking or
        batch statistics. Lightning keeps these modes through validation.
        """
        super().on_fit_start()
        self.module.train()
        if self.freeze_batch_norm:
            for layer in self.module.modules():
                if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                    layer.eval()
        for key, value in self.loss_kwargs.items():
            if isinstance(value, torch.Tensor):
                self.loss_kwargs[key] = value.to(self.device)

    def on_train_epoch_start(self) -> None:
        """Name the run in the progress bar (Lightning calls this after the bar's own hook)."""
        if self.description is None:
            return
        for callback in self.trainer.callbacks:
            bar = getattr(callback, "main_progress_bar", None)
            if bar is not None and hasattr(bar, "set_description"):
                epoch = f"epoch {self.current_epoch + 1}/{self.trainer.max_epochs}"
                bar.set_description(f"{self.description}: {epoch}")

    def _reset_sums(self) -> None:
        # (loss × cells, reconstruction loss, local KL, global KL) summed over the epoch
        self._sums: torch.Tensor | None = None
        self._n_obs = self._n_batches = 0

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Minus the ELBO of one minibatch; its terms are only added up here.

        Parameters
        ----------
        batch
            The minibatch (registry key → tensor).
        batch_idx
            Index of the minibatch in the epoch.
        """
        if "kl_weight" in self.loss_kwargs:
            self.loss_kwargs["kl_weight"] = self.kl_weight
        _, _, out = self.forward(batch, loss_kwargs=self.loss_kwargs)
        terms = torch.stack(
            [
                out.loss * out.n_obs_minibatch,
                out.reconstruction_loss_sum,
                out.kl_local_sum,
                out.kl_global_sum,
            ]
        ).detach()
        self._sums = terms if self._sums is None else self._sums + terms
        self._n_obs += out.n_obs_minibatch
        self._n_batches += 1
        if not self.automatic_optimization:
            optimiser = self.optimizers()
            optimiser.zero_grad(set_to_none=True)
            self.manual_backward(out.loss)
            optimiser.step()  # Lightning's wrapper: it counts the step in global_step
            if self.lr_schedule == "cosine":
                self.lr_schedulers().step()
        return out.loss

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training loss and ELBO terms (the plan's one host sync per epoch)."""
        if self._sums is None:
            return
        loss, reconstruction, kl_local, kl_global = self._sums
        self.log("train_loss", loss / self._n_obs, sync_dist=self.use_sync_dist)
        # One update with the epoch's sums gives the ElboMetric values that an update per
        # step would: per-cell terms are sums over cells, the global KL is a mean per batch.
        self.elbo_train.update(
            reconstruction_loss=reconstruction,
            kl_local=kl_local,
            kl_global=kl_global / self._n_batches,
            n_obs_minibatch=self._n_obs,
        )
        # Lightning computes the metric objects (summing their states across processes
        # under DDP), logs them and resets them.
        self.log_dict(
            self.train_metrics, on_step=False, on_epoch=True, sync_dist=self.use_sync_dist
        )
        if "kl_weight" in self.loss_kwargs:
            self.log("kl_weight", float(self.kl_weight), on_step=False, on_epoch=True)
        self._reset_sums()
        if self.reduce_lr_on_plateau and not self.automatic_optimization:
            self._step_plateau_schedule()

    def _step_plateau_schedule(self) -> None:
        # Lightning's automatic loop would do this after the epoch's validation, with the
        # same metric, and would refuse to go on without it.
        value = self.trainer.callback_metrics.get(self.lr_scheduler_metric)
        if value is None:
            raise RuntimeError(
                f"reduce_lr_on_plateau follows {self.lr_scheduler_metric!r}, which this epoch did not "
                "log; validate every epoch (train_size < 1, check_val_every_n_epoch=1)."
            )
        self.lr_schedulers().step(value)

    def configure_optimizers(self):
        """scvi-tools' optimiser (and plateau schedule), plus the cosine schedule on request."""
        config = super().configure_optimizers()
        if self.lr_schedule == "cosine":
            # per step rather than per epoch, so that a run of a few long epochs decays smoothly
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                config["optimizer"],
                T_max=max(1, int(self.trainer.estimated_stepping_batches)),
                eta_min=self.lr_min,
            )
            config["lr_scheduler"] = {"scheduler": scheduler, "interval": "step"}
        if "lr_scheduler" in config and not self.automatic_optimization:
            # the manual step runs the schedule itself; Lightning would warn that it ignores
            # the keys that tell its automatic loop when to step
            config["lr_scheduler"] = config["lr_scheduler"]["scheduler"]
        return config

    def _optimizer_creator_fn(self, optimizer_cls: type[torch.optim.Optimizer]):
        def create(params):
            params = list(params)
            fused = self.fused_optimizer and all(
                p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params
            )
            return optimizer_cls(
                params,
                lr=self.lr,
                eps=self.eps,
                weight_decay=self.weight_decay,
                fused=fused or None,
            )

        return create
