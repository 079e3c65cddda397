"""The lean training path: epoch-level logging, fused Adam, on-device minibatches, deferred NaN checks."""

import numpy as np
import pytest
import torch
from conftest import QUIET, PoisonDecoder, assert_compiled_matches_eager, assert_finite_weights
from lightning.pytorch.callbacks import Callback
from scvi.train import TrainingPlan

import mixvi
from mixvi.model._guard import NonFiniteLossError
from mixvi.model._minibatches import DeviceBatches
from mixvi.model._training_plan import LR_SCHEDULES, MixviTrainingPlan

KEYS = (
    "train_loss",
    "elbo_train",
    "reconstruction_loss_train",
    "kl_local_train",
    "kl_global_train",
)
VALIDATION_KEYS = ("validation_loss", "elbo_validation", "reconstruction_loss_validation")


def _trained(adata, plan_cls, **kwargs):
    mixvi.settings.seed = 0
    mixvi.model.VAE.setup_anndata(adata)
    model = mixvi.model.VAE(adata, n_hidden=32)
    model._training_plan_cls = plan_cls
    model.train(max_epochs=4, train_size=0.8, check_val_every_n_epoch=1, **kwargs, **QUIET)
    return model


@pytest.mark.parametrize("loader", ["device", "anndata"])
def test_history_holds_the_values_scvi_tools_plan_logs(pbmc, loader):
    lean = _trained(pbmc.copy(), MixviTrainingPlan, loader=loader)
    scvi_plan = _trained(pbmc.copy(), TrainingPlan, loader=loader)
    for key in KEYS + VALIDATION_KEYS:
        ours = lean.history[key].to_numpy(dtype=float).ravel()
        theirs = scvi_plan.history[key].to_numpy(dtype=float).ravel()
        assert len(ours) == 4, key
        # the two plans differ only in where they log and in Adam's fused kernel (rounding)
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, err_msg=key)
    # the KL warm-up weight is recorded once per epoch: it rises from 0 over the first epoch
    kl_weight = lean.history["kl_weight"].to_numpy(dtype=float).ravel()
    assert len(kl_weight) == 4 and np.all(np.diff(kl_weight) >= 0) and kl_weight[-1] == 1.0


def test_adam_is_fused_for_float32_parameters_on_the_cpu(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    module = mixvi.model.VAE(pbmc).module
    optimiser = MixviTrainingPlan(module).configure_optimizers()["optimizer"]
    assert isinstance(optimiser, torch.optim.Adam) and optimiser.defaults["fused"] is True
    module.double()  # fused Adam is for float32 here: fall back to the loop
    optimiser = MixviTrainingPlan(module).configure_optimizers()["optimizer"]
    assert not optimiser.defaults["fused"]


def test_fused_optimizer_false_is_honoured(pbmc):
    # scvi-tools 1.5's option: mixvi's own optimiser creator must not ignore it
    mixvi.model.VAE.setup_anndata(pbmc)
    module = mixvi.model.VAE(pbmc).module
    optimiser = MixviTrainingPlan(module, fused_optimizer=False).configure_optimizers()["optimizer"]
    assert isinstance(optimiser, torch.optim.Adam) and not optimiser.defaults["fused"]
    model = mixvi.model.VAE(pbmc)
    model.train(max_epochs=1, plan_kwargs={"fused_optimizer": False}, **QUIET)
    assert not model.trainer.optimizers[0].defaults["fused"]


def test_device_batches_cover_every_row_once_in_the_drawn_order():
    x = torch.arange(23 * 3, dtype=torch.float32).reshape(23, 3)
    labels = torch.arange(23).unsqueeze(1)
    batches = DeviceBatches({"X": x, "labels": labels}, batch_size=5, shuffle=True)
    assert len(batches) == 5
    torch.manual_seed(0)
    first = list(batches)
    assert [len(b["X"]) for b in first] == [5, 5, 5, 5, 3]
    order = torch.cat([b["labels"].ravel() for b in first])
    assert sorted(order.tolist()) == list(range(23)) and order.tolist() != list(range(23))
    for batch in first:  # rows travel together
        torch.testing.assert_close(batch["X"], x[batch["labels"].ravel()])
    torch.manual_seed(0)
    again = torch.cat([b["labels"].ravel() for b in batches])
    assert again.tolist() == order.tolist()  # the global seed decides the order
    assert torch.cat([b["labels"].ravel() for b in batches]).tolist() != order.tolist()
    ordered = DeviceBatches({"labels": labels}, batch_size=10, shuffle=False)
    assert torch.cat([b["labels"].ravel() for b in ordered]).tolist() == list(range(23))


@pytest.mark.parametrize("check_every", [1, 50])
def test_the_nan_error_names_the_first_bad_step_however_often_the_host_looks(
    pbmc, monkeypatch, check_every
):
    from mixvi.model import _guard

    original = _guard.TrainingGuard.__init__
    monkeypatch.setattr(
        _guard.TrainingGuard,
        "__init__",
        lambda self, check_every=check_every: original(self, check_every),
    )
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc, n_hidden=32)
    steps_per_epoch = int(np.ceil(pbmc.n_obs * 0.9 / 128))
    target = steps_per_epoch + 2  # the third step of epoch 2
    with pytest.raises(NonFiniteLossError, match="in epoch 2") as info:
        model.train(max_epochs=4, callbacks=[PoisonDecoder(step=target)], **QUIET)
    assert info.value.step == target and info.value.epoch == 2
    assert np.isnan(info.value.value)


def test_the_guard_keeps_losses_without_their_graphs_and_checks_them_in_batches():
    from types import SimpleNamespace

    from mixvi.model._guard import TrainingGuard

    guard = TrainingGuard(check_every=3)
    trainer = SimpleNamespace(current_epoch=0, global_step=0)
    weight = torch.ones(2, requires_grad=True)
    for step, value in enumerate([1.0, 2.0, float("inf")]):
        trainer.global_step = step
        guard.on_train_batch_start(trainer, None, None, step)
        loss = (weight * value).sum()
        if step < 2:
            guard.on_train_batch_end(trainer, None, {"loss": loss}, None, step)
            kept = guard._pending[-1][1]
            assert not kept.requires_grad and kept.grad_fn is None  # the graph can be freed
            # a copy: CUDA-graph replays overwrite the memory of earlier steps' outputs
            assert kept.data_ptr() != loss.data_ptr() and kept.item() == 2 * value
        else:
            # the third step completes a batch of checks: the host looks and finds step 2
            with pytest.raises(NonFiniteLossError) as info:
                guard.on_train_batch_end(trainer, None, {"loss": loss}, None, step)
            assert info.value.step == 2 and info.value.value == float("inf")
    assert guard._pending == []


class _ModeSpy(Callback):
    """Records whether the module is in training mode at the first step of every fit."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            module = pl_module.module
            # the GMVAE's plan freezes batch norm outside pretraining; every other layer trains
            frozen_bn = pl_module.freeze_batch_norm
            assert frozen_bn == (pl_module.loss_kwargs.get("phase") in ("anchored", "free"))
            self.modes.append(
                all(
                    m.training != (frozen_bn and isinstance(m, torch.nn.BatchNorm1d))
                    for m in module.modules()
                )
            )


def test_training_after_inference_runs_in_training_mode(pbmc):
    """Lightning keeps the eval mode that inference leaves; every fit must train in train mode."""
    spy = _ModeSpy()
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc, n_hidden=32)
    model.train(max_epochs=1, callbacks=[spy], **QUIET)
    model.get_latent_representation()
    assert not model.module.training
    model.train(max_epochs=1, callbacks=[spy], **QUIET)
    # the GMVAE's anchored and free phases both follow the inference of its mixture start
    mixvi.model.GMVAE.setup_anndata(pbmc)
    gmvae = mixvi.model.GMVAE(pbmc, n_components=3, n_hidden=32, input_dropout_rate=0.1)
    gmvae.train(max_epochs=3, pretrain_epochs=1, anchor_epochs=1, callbacks=[spy], **QUIET)
    assert spy.modes == [True] * 5


def test_compiled_training_is_one_graph_and_matches_eager(pbmc):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()

    class Plans(Callback):
        def on_fit_start(self, trainer, pl_module):
            self.plan = pl_module

    plans = Plans()
    eager = _trained(pbmc.copy(), MixviTrainingPlan)
    compiled = _trained(
        pbmc.copy(), MixviTrainingPlan, plan_kwargs={"compile": True}, callbacks=[plans]
    )
    assert isinstance(plans.plan.module, torch._dynamo.eval_frame.OptimizedModule)
    # The whole step compiles: no graph break (e.g. torch.distributions' KL lookup table),
    # and one graph per minibatch shape and mode (full, last partial batch, validation)
    # however the KL warm-up weight changes between epochs.
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert 1 <= counters["stats"]["unique_graphs"] <= 4
    assert_compiled_matches_eager(eager, compiled)


def test_a_nan_under_compile_restores_the_uncompiled_weights(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc, n_hidden=32)
    with pytest.raises(NonFiniteLossError, match="in epoch 2"):
        model.train(
            max_epochs=3, callbacks=[PoisonDecoder(epoch=1)], plan_kwargs={"compile": True}, **QUIET
        )
    assert_finite_weights(model.module)


class _LearningRates(Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


# Lightning runs the optimiser itself (automatic optimisation) only when it clips gradients
# or accumulates minibatches; a clipping threshold no gradient reaches keeps the updates
# those of the manual step.
AUTOMATIC = {"gradient_clip_val": 1e12}
PATHS = {"manual": {}, "automatic": AUTOMATIC}


class _Paths(Callback):
    """Records whether each fit ran Lightning's automatic optimisation."""

    def __init__(self) -> None:
        self.automatic: list[bool] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.automatic.append(pl_module.automatic_optimization)


def test_the_step_is_manual_unless_lightning_must_clip_or_accumulate(pbmc):
    paths = _Paths()
    manual = _trained(pbmc.copy(), MixviTrainingPlan, callbacks=[paths])
    automatic = _trained(pbmc.copy(), MixviTrainingPlan, callbacks=[paths], **AUTOMATIC)
    # accumulating one minibatch accumulates nothing (manual); two need Lightning's loop
    _trained(pbmc.copy(), MixviTrainingPlan, callbacks=[paths], accumulate_grad_batches=1)
    _trained(pbmc.copy(), MixviTrainingPlan, callbacks=[paths], accumulate_grad_batches=2)
    assert paths.automatic == [False, True, False, True]
    # the same seed gives the same updates along either path
    for key in KEYS + VALIDATION_KEYS:
        np.testing.assert_allclose(
            manual.history[key].to_numpy(dtype=float).ravel(),
            automatic.history[key].to_numpy(dtype=float).ravel(),
            rtol=1e-6,
            err_msg=key,
        )
    weights = automatic.module.state_dict()
    for name, value in manual.module.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_the_learning_rate_schedule_spans_the_run(pbmc, schedule, path):
    spy = _LearningRates()
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc, n_hidden=32)
    model.train(
        max_epochs=3,
        batch_size=128,
        lr=2e-3,
        train_size=1.0,
        callbacks=[spy],
        plan_kwargs={"lr_schedule": schedule},
        **PATHS[path],
        **QUIET,
    )
    rates = np.array(spy.rates)
    assert len(rates) == 3 * int(np.ceil(pbmc.n_obs / 128))
    if schedule == "constant":
        assert np.all(rates == 2e-3)
        return
    # half a cosine from lr towards 0 over all steps of the run, one value per step
    steps = np.arange(len(rates))
    np.testing.assert_allclose(rates, 1e-3 * (1 + np.cos(np.pi * steps / len(rates))), rtol=1e-6)
    assert np.all(np.diff(rates) < 0)


@pytest.mark.parametrize("path", PATHS)
def test_the_plateau_schedule_lowers_the_rate_after_each_epoch_without_progress(pbmc, path):
    spy = _LearningRates()
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc, n_hidden=32)
    # no epoch can improve on the first by 1e9, so every later epoch halves the rate
    plateau = {
        "reduce_lr_on_plateau": True,
        "lr_patience": 0,
        "lr_factor": 0.5,
        "lr_threshold": 1e9,
    }
    model.train(
        max_epochs=4,
        batch_size=128,
        lr=2e-3,
        train_size=0.8,
        check_val_every_n_epoch=1,
        callbacks=[spy],
        plan_kwargs=plateau,
        **PATHS[path],
        **QUIET,
    )
    per_epoch = np.array(spy.rates).reshape(4, -1)
    assert np.all(per_epoch == per_epoch[:, :1])  # constant within an epoch
    np.testing.assert_allclose(per_epoch[:, 0], [2e-3, 2e-3, 1e-3, 5e-4])


def test_the_plateau_schedule_needs_a_validation_metric_every_epoch(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc, n_hidden=32)
    plateau = {"reduce_lr_on_plateau": True}
    with pytest.raises(ValueError, match="no validation cells"):
        model.train(max_epochs=2, train_size=1.0, plan_kwargs=plateau, **QUIET)
    with pytest.raises(RuntimeError, match="'elbo_validation', which this epoch did not log"):
        model.train(
            max_epochs=2, train_size=0.8, check_val_every_n_epoch=2, plan_kwargs=plateau, **QUIET
        )


def test_a_second_schedule_is_refused(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    module = mixvi.model.VAE(pbmc).module
    with pytest.raises(ValueError, match="choose one"):
        MixviTrainingPlan(module, lr_schedule="cosine", reduce_lr_on_plateau=True)
    with pytest.raises(ValueError, match="'constant' or 'cosine'"):
        MixviTrainingPlan(module, lr_schedule="linear")
