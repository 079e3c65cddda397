"""Training on a CUDA GPU: the on-device path, its equivalence with the AnnData loader, faults, GMVAE.

Skipped where torch sees no CUDA device (CI); run with ``pytest -m gpu`` on a machine with one.
"""

import numpy as np
import pytest
import torch
from conftest import QUIET, PoisonDecoder, assert_compiled_matches_eager, assert_finite_weights

import mixvi
from mixvi.model._guard import NonFiniteLossError

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _vae(adata, loader, epochs=3, **train):
    mixvi.settings.seed = 0
    mixvi.model.VAE.setup_anndata(adata)
    model = mixvi.model.VAE(adata, n_hidden=32)
    model.train(max_epochs=epochs, loader=loader, accelerator="gpu", **train, **QUIET)
    return model


def test_auto_puts_the_data_on_the_gpu(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc)
    assert model._resolve_loader("auto", "gpu", "auto", {}) == "device"


def test_gpu_device_path_matches_the_anndata_loader(pbmc):
    fast = _vae(pbmc.copy(), "device")
    slow = _vae(pbmc.copy(), "anndata")
    assert fast.device.type == "cuda"
    for key in ("elbo_train", "reconstruction_loss_train"):
        np.testing.assert_allclose(
            fast.history[key].to_numpy(dtype=float),
            slow.history[key].to_numpy(dtype=float),
            rtol=1e-4,
        )
    np.testing.assert_allclose(
        fast.get_latent_representation(), slow.get_latent_representation(), atol=1e-3
    )


def test_a_nan_loss_on_the_gpu_stops_training_and_restores_the_last_epoch(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc, n_hidden=32)
    with pytest.raises(NonFiniteLossError, match="in epoch 2"):
        model.train(max_epochs=4, accelerator="gpu", callbacks=[PoisonDecoder(epoch=1)], **QUIET)
    assert_finite_weights(model.module)


def test_gmvae_trains_on_the_gpu(pbmc):
    mixvi.model.GMVAE.setup_anndata(pbmc)
    model = mixvi.model.GMVAE(pbmc, n_components=4, n_hidden=32, n_layers=1)
    model.train(max_epochs=7, pretrain_epochs=3, accelerator="gpu", **QUIET)
    assert model.device.type == "cuda"
    probs = model.get_cluster_probabilities()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    model.write_results(pbmc)
    assert pbmc.obsm["X_gmvae"].shape == (pbmc.n_obs, 10)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_training_on_the_gpu_matches_eager(pbmc, mode):
    eager = _vae(pbmc.copy(), "device", epochs=4)
    plan = {"compile": True, "compile_kwargs": {"mode": mode}}
    compiled = _vae(pbmc.copy(), "device", epochs=4, plan_kwargs=plan)
    assert_compiled_matches_eager(eager, compiled)
    latent = compiled.get_latent_representation()
    assert latent.shape == (pbmc.n_obs, 10) and np.isfinite(latent).all()
