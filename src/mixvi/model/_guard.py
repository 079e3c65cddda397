"""Training that fails loudly and leaves a usable model: non-finite losses and interrupts."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch.callbacks import Callback


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, value: float, epoch: int, step: int, hint: str = "") -> None:
        self.value, self.epoch, self.step = value, epoch, step
        super().__init__(
            f"The training loss became {value} in epoch {epoch} (step {step}). {hint}".strip()
        )


class TrainingGuard(Callback):
    """Keeps the weights of the last completed epoch and stops at the first non-finite loss.

    The copy lives on the CPU and is refreshed at the end of every training epoch, so after
    a failure or an interrupt the model can be put back to its last good state.

    Reading a loss on the host makes it wait for the GPU, which would stall every step. So
    each step only keeps a copy of its (detached) loss, one small copy on the device;
    every ``check_every`` steps and at the end of each epoch the host checks the
    kept losses in one go. Training stops within ``check_every`` steps of the failure, the
    error names the exact step, and the weights go back to the end of the last complete
    epoch either way.

    Parameters
    ----------
    check_every
        Steps between two looks at the record.
    """

    def __init__(self, check_every: int = 50) -> None:
        self.check_every = check_every
        self.good_state: dict[str, torch.Tensor] | None = None
        self.good_epoch = 0
        self.interrupted = False
        self.epoch = self.step = 0
        # (global step, detached loss) of the steps since the last check
        self._pending: list[tuple[int, torch.Tensor]] = []

    def _snapshot(self, pl_module) -> dict[str, torch.Tensor]:
        # under plan_kwargs={"compile": True} the plan holds torch.compile's wrapper, whose
        # state_dict keys carry an "_orig_mod." prefix that the model's module lacks
        module = getattr(pl_module.module, "_orig_mod", pl_module.module)
        return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}

    def on_train_start(self, trainer, pl_module) -> None:
        self.good_state = self._snapshot(pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._pending = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer)
        self.good_state = self._snapshot(pl_module)
        self.good_epoch = trainer.current_epoch + 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.epoch, self.step = trainer.current_epoch + 1, trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        # a copy, not a view: under CUDA graphs (compile mode "reduce-overhead") the step's
        # outputs live in memory that the next replay overwrites
        loss = loss.detach()
        self._pending.append((self.step, loss.clone() if loss.dim() == 0 else loss.float().mean()))
        if len(self._pending) >= self.check_every:
            self._check(trainer)

    def _check(self, trainer) -> None:
        if not self._pending:
            return
        steps, losses = zip(*self._pending, strict=True)
        self._pending = []
        values = torch.stack(losses).float()
        bad = (~torch.isfinite(values)).nonzero()  # the one host synchronisation
        if len(bad):
            first = int(bad[0, 0])
            raise NonFiniteLossError(values[first].item(), trainer.current_epoch + 1, steps[first])

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.interrupted = isinstance(exception, KeyboardInterrupt)

    def as_non_finite(self, error: BaseException) -> NonFiniteLossError | None:
        """The NonFiniteLossError behind ``error``, if it is one.

        NaN often surfaces before the loss does: torch.distributions refuses NaN parameters
        with a ValueError ("found invalid values").
        """
        if isinstance(error, NonFiniteLossError):
            return error
        if isinstance(error, ValueError) and "invalid values" in str(error):
            return NonFiniteLossError(float("nan"), self.epoch, self.step)
        return None

    def restore(self, module: torch.nn.Module) -> None:
        """Put ``module`` back to the weights of the last completed epoch (or the start)."""
        if self.good_state is not None:
            device = next(module.parameters()).device
            module.load_state_dict({k: v.to(device) for k, v in self.good_state.items()})
