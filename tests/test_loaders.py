"""The in-memory (device-backed) training path: chosen by default when it fits, same model as the AnnData loader."""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import QUIET
from scvi.model.base import BaseModelClass

import mixvi


def _train(cls, adata, loader, **kwargs):
    mixvi.settings.seed = 0
    cls.setup_anndata(adata, **kwargs.pop("setup", {}))
    model = cls(adata, n_hidden=32, **kwargs.pop("model", {}))
    model.train(max_epochs=3, loader=loader, **kwargs, **QUIET)
    return model


@pytest.mark.parametrize(
    ("cls", "extra"),
    [
        (mixvi.model.VAE, {}),
        (
            mixvi.model.CVAE,
            {
                "setup": {"layer": "counts", "condition_key": "condition"},
                "model": {"likelihood": "nb"},
            },
        ),
        (mixvi.model.GMVAE, {"model": {"n_components": 3}, "pretrain_epochs": 2}),
    ],
)
def test_device_path_gives_the_same_model_as_the_anndata_loader(counts_adata, pbmc, cls, extra):
    adata = counts_adata if cls is mixvi.model.CVAE else pbmc
    fast = _train(
        cls,
        adata.copy(),
        "device",
        **{k: dict(v) if isinstance(v, dict) else v for k, v in extra.items()},
    )
    slow = _train(
        cls,
        adata.copy(),
        "anndata",
        **{k: dict(v) if isinstance(v, dict) else v for k, v in extra.items()},
    )
    for key in ("elbo_train", "reconstruction_loss_train"):
        np.testing.assert_allclose(
            fast.history[key].to_numpy(dtype=float),
            slow.history[key].to_numpy(dtype=float),
            rtol=1e-5,
        )
    np.testing.assert_allclose(
        fast.get_latent_representation(), slow.get_latent_representation(), atol=1e-5
    )
    np.testing.assert_array_equal(np.sort(fast.train_indices), np.sort(slow.train_indices))


def test_auto_picks_the_device_path_only_where_it_applies(pbmc, tmp_path):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc)
    assert model._resolve_loader("auto", "cpu", "auto", {}) == "device"
    assert model._resolve_loader("anndata", "cpu", "auto", {}) == "anndata"
    assert model._resolve_loader("auto", "cpu", 2, {"strategy": "ddp"}) == "anndata"
    assert model._resolve_loader("device", "cpu", "auto", {"datamodule": object()}) == "anndata"
    with pytest.raises(ValueError, match="loader must be one of"):
        model._resolve_loader("gpu", "cpu", "auto", {})
    with pytest.raises(ValueError, match="loader must be one of"):
        model.train(max_epochs=1, loader="fast", **QUIET)

    path = tmp_path / "backed.h5ad"
    ad.AnnData(pbmc.X.copy()).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    mixvi.model.VAE.setup_anndata(backed)
    assert mixvi.model.VAE(backed)._resolve_loader("auto", "cpu", "auto", {}) == "anndata"


def test_auto_falls_back_when_the_data_do_not_fit(pbmc, monkeypatch):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc)
    dense_bytes = 4 * pbmc.n_obs * pbmc.n_vars
    monkeypatch.setattr(mixvi.model._minibatches, "free_memory", lambda device: 4 * dense_bytes - 1)
    assert model._resolve_loader("auto", "cpu", "auto", {}) == "anndata"
    monkeypatch.setattr(mixvi.model._minibatches, "free_memory", lambda device: 4 * dense_bytes)
    assert model._resolve_loader("auto", "cpu", "auto", {}) == "device"


def test_free_memory_is_positive_on_this_machine():
    assert mixvi.model._minibatches.free_memory(torch.device("cpu")) > 0


def test_inference_uses_large_minibatches(pbmc, monkeypatch):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc)
    model.train(max_epochs=1, **QUIET)
    sizes = []
    original = BaseModelClass._make_data_loader

    def spy(self, adata, indices=None, batch_size=None, *args, **kwargs):
        sizes.append(batch_size)
        return original(self, adata, indices, batch_size, *args, **kwargs)

    monkeypatch.setattr(BaseModelClass, "_make_data_loader", spy)
    model.get_latent_representation()
    model.get_latent_representation(batch_size=64)
    assert sizes == [mixvi.model._minibatches.INFERENCE_BATCH_SIZE, 64]


def _counts_h5ad(counts_adata, tmp_path):
    """The counts as a sparse X in an .h5ad file, to be read backed or into memory."""
    path = tmp_path / "counts.h5ad"
    on_disk = counts_adata.copy()
    on_disk.X = sp.csr_matrix(on_disk.layers["counts"])
    del on_disk.layers["counts"]
    on_disk.write_h5ad(path)
    return path


def test_training_from_a_backed_h5ad_matches_in_memory(counts_adata, tmp_path):
    path = _counts_h5ad(counts_adata, tmp_path)
    backed = ad.read_h5ad(path, backed="r")
    models = []
    for data in (backed, ad.read_h5ad(path)):
        mixvi.settings.seed = 0
        mixvi.model.VAE.setup_anndata(data)
        model = mixvi.model.VAE(data, likelihood="nb", n_hidden=16)
        model.train(max_epochs=2, train_size=1.0, loader="anndata", **QUIET)
        models.append(model)
    assert backed.isbacked and not isinstance(backed.X, np.ndarray)  # X stayed on disk
    assert models[0]._resolve_loader("auto", "cpu", "auto", {}) == "anndata"
    # h5py needs sorted rows, so draws of dropout and z land on other cells: close, not identical
    elbo = [m.history["elbo_train"].to_numpy(dtype=float).ravel() for m in models]
    np.testing.assert_allclose(elbo[0], elbo[1], rtol=0.02)
    assert np.isfinite(models[0].get_latent_representation()).all()


def test_the_gmvae_reads_library_sizes_of_a_backed_h5ad_in_blocks(counts_adata, tmp_path):
    path = _counts_h5ad(counts_adata, tmp_path)
    backed = ad.read_h5ad(path, backed="r")
    targets = []
    for data in (backed, ad.read_h5ad(path)):
        mixvi.model.GMVAE.setup_anndata(data)
        model = mixvi.model.GMVAE(data, n_components=3, likelihood="nb")
        targets.append(model.module.library_target)
    assert backed.isbacked  # the median library size was read without loading X
    assert targets[0] == pytest.approx(np.median(counts_adata.layers["counts"].sum(axis=1)))
    assert targets[0] == pytest.approx(targets[1])


def test_the_pca_start_reads_a_backed_h5ad_as_in_memory(counts_adata, tmp_path):
    from mixvi.model._mixture_start import input_pcs

    path = _counts_h5ad(counts_adata, tmp_path)
    backed = ad.read_h5ad(path, backed="r")
    in_memory = ad.read_h5ad(path)
    pcs = [input_pcs(data.X, 100.0, log1p=True, n_comps=5) for data in (backed, in_memory)]
    assert backed.isbacked and pcs[0].shape == (300, 5)
    np.testing.assert_allclose(np.abs(pcs[0]), np.abs(pcs[1]), atol=1e-4)
    mixvi.settings.seed = 0
    mixvi.model.GMVAE.setup_anndata(backed)
    model = mixvi.model.GMVAE(backed, n_components=3, likelihood="nb")
    model.pretrain(1, train_size=1.0, loader="anndata", **QUIET)
    start = model.init_mixture("pca")
    assert start.shape == (300, 3) and set(np.unique(start)) == {0.0, 1.0}
    assert backed.isbacked  # the start read X a block of rows at a time; the AnnData stays backed
