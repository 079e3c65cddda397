"""scvi-tools' training plan with the per-step bookkeeping moved to the end of the epoch."""

from __future__ import annotations

import torch
from scvi.train import TrainingPlan


class MixviTrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` that logs once per epoch and uses a fused Adam.

    scvi-tools calls Lightning's ``self.log`` several times in every training step. Each
    call costs Python time on the CPU, and a logged tensor that reaches the progress bar
    makes the host wait for the GPU, so a small network spends much of its step there. This
    plan still feeds scvi-tools' :class:`~scvi.train._metrics.ElboMetric` objects at every
    step (cheap tensor additions, no synchronisation) and accumulates the training loss on
    the device, but hands everything to Lightning once, in :meth:`on_train_epoch_end`. The
    values in ``model.history`` are the same as scvi-tools': ``train_loss`` (the mean loss
    per cell, weighted by minibatch size) and ``elbo_train``, ``reconstruction_loss_train``,
    ``kl_local_train`` and ``kl_global_train``, plus the epoch's ``kl_weight``.

    Adam is the fused implementation where every parameter lives on a CPU or CUDA device:
    one kernel for all parameters instead of a loop over them, with the same update rule.

    Parameters
    ----------
    module
        The mixvi module to train.
    **kwargs
        See :class:`scvi.train.TrainingPlan`.
    """

    def __init__(self, module, **kwargs) -> None:
        super().__init__(module, **kwargs)
        self._loss_sum: torch.Tensor | None = None
        self._obs_sum = 0

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Minus the ELBO of one minibatch; the metrics are only accumulated here.

        Parameters
        ----------
        batch
            The minibatch (registry key → tensor).
        batch_idx
            Index of the minibatch in the epoch.
        """
        if "kl_weight" in self.loss_kwargs:
            self.loss_kwargs["kl_weight"] = self.kl_weight
        _, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        n_obs = loss_output.n_obs_minibatch
        self.elbo_train.update(
            reconstruction_loss=loss_output.reconstruction_loss_sum,
            kl_local=loss_output.kl_local_sum,
            kl_global=loss_output.kl_global_sum,
            n_obs_minibatch=n_obs,
        )
        weighted = loss_output.loss.detach() * n_obs
        self._loss_sum = weighted if self._loss_sum is None else self._loss_sum + weighted
        self._obs_sum += n_obs
        return loss_output.loss

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training loss and ELBO terms (the only host sync of the epoch)."""
        if self._loss_sum is not None:
            self.log("train_loss", self._loss_sum / self._obs_sum, sync_dist=self.use_sync_dist)
        # Metric objects go to Lightning, which computes them (summing their states across
        # processes under DDP) and resets them, exactly as when they are logged every step.
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, sync_dist=self.use_sync_dist)
        if "kl_weight" in self.loss_kwargs:
            self.log("kl_weight", float(self.kl_weight), on_step=False, on_epoch=True)
        self._loss_sum, self._obs_sum = None, 0

    def _optimizer_creator_fn(self, optimizer_cls: type[torch.optim.Optimizer]):
        def create(params):
            params = list(params)
            fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
            return optimizer_cls(
                params, lr=self.lr, eps=self.eps, weight_decay=self.weight_decay, fused=fused or None
            )

        return create
