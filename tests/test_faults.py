"""Faults during training: non-finite losses, interrupts, determinism and resuming."""

import signal

import numpy as np
import pytest
import torch
from conftest import QUIET, poison_decoder
from lightning.pytorch.callbacks import Callback

import mixvi
from mixvi.model._guard import NonFiniteLossError


class _AtEpoch(Callback):
    """Does something at the start of one epoch and remembers the weights before it."""

    def __init__(self, epoch, action):
        self.epoch, self.action, self.before = epoch, action, None

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            self.before = {k: v.detach().clone() for k, v in pl_module.module.state_dict().items()}
            self.action(pl_module.module)


def _interrupt(module):
    raise KeyboardInterrupt


def _vae(pbmc):
    mixvi.settings.seed = 0
    mixvi.model.VAE.setup_anndata(pbmc)
    return mixvi.model.VAE(pbmc, n_hidden=32)


def test_a_nan_loss_stops_training_naming_the_epoch_and_a_cause(pbmc):
    model = _vae(pbmc)
    at = _AtEpoch(2, poison_decoder)
    with pytest.raises(
        NonFiniteLossError, match=r"became nan in epoch 3.*learning rate.*likelihood"
    ) as info:
        model.train(max_epochs=5, callbacks=[at], **QUIET)
    assert info.value.epoch == 3
    state = model.module.state_dict()
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    for key, value in at.before.items():  # back to the end of epoch 2, before the poison
        torch.testing.assert_close(state[key], value)


def test_an_interrupt_leaves_a_usable_model_at_the_last_complete_epoch(pbmc):
    model = _vae(pbmc)
    at = _AtEpoch(3, _interrupt)
    with pytest.raises(KeyboardInterrupt, match="after 3 complete epoch"):
        model.train(max_epochs=10, callbacks=[at], **QUIET)
    assert model.is_trained_
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    for key, value in at.before.items():
        torch.testing.assert_close(model.module.state_dict()[key], value)
    latent = model.get_latent_representation()
    assert latent.shape == (pbmc.n_obs, 10) and np.isfinite(latent).all()


def test_the_same_seed_gives_the_same_latents_on_the_cpu(pbmc):
    runs = []
    for _ in range(2):
        model = _vae(pbmc)
        model.train(max_epochs=3, accelerator="cpu", **QUIET)
        runs.append(model.get_latent_representation())
    np.testing.assert_array_equal(runs[0], runs[1])
    model = _vae(pbmc)
    mixvi.settings.seed = 1
    model.train(max_epochs=3, accelerator="cpu", **QUIET)
    assert not np.allclose(model.get_latent_representation(), runs[0])


def test_training_resumes_from_a_saved_checkpoint(pbmc, tmp_path):
    model = _vae(pbmc)
    model.train(max_epochs=30, **QUIET)
    first = model.history["elbo_train"].to_numpy(dtype=float).ravel()
    model.save(tmp_path / "ckpt")
    resumed = mixvi.model.VAE.load(tmp_path / "ckpt", adata=pbmc)
    resumed.train(max_epochs=5, kl_warmup_epochs=0, **QUIET)
    history = resumed.history["elbo_train"].to_numpy(dtype=float).ravel()
    np.testing.assert_allclose(history[: len(first)], first)  # the checkpoint keeps the history
    again = history[len(first) :]
    assert len(again) == 5
    # picks up near where it stopped, far below where a fresh model starts
    assert again[0] < first[0] - 0.5 * (first[0] - first[-1])
    assert again[-1] <= again[0]
