"""AE, VAE and CVAE as scvi-tools models on AnnData."""

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import torch
from conftest import QUIET
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

import mixvi


def test_vae_latent_feeds_scanpy(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc, n_latent=8)
    model.train(max_epochs=15, **QUIET)
    out = model.write_results()
    assert out is pbmc
    assert pbmc.obsm["X_vae"].shape == (700, 8)
    assert np.isfinite(pbmc.obsm["X_vae"]).all()
    sc.pp.neighbors(pbmc, use_rep="X_vae")
    sc.tl.leiden(pbmc, flavor="igraph", n_iterations=2, directed=False)
    sc.tl.umap(pbmc)
    assert pbmc.obs["leiden"].nunique() > 1
    assert pbmc.obsm["X_umap"].shape == (700, 2)


def test_scanpy_neighbors_with_its_defaults_on_more_than_10000_cells_of_a_latent():
    # above 10,000 cells scanpy's default kNN is pynndescent's; pynndescent 0.7's csr_array
    # graph (no getnnz) breaks scanpy 1.11 and 1.12 alike, so the install must never get it
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(3, 20))
    x = (centres[rng.integers(0, 3, 12_000)] + rng.normal(size=(12_000, 20))).astype(np.float32)
    adata = ad.AnnData(x)
    mixvi.model.VAE.setup_anndata(adata)
    model = mixvi.model.VAE(adata, n_hidden=16, n_latent=4)
    model.train(max_epochs=1, batch_size=512, **QUIET)
    model.write_results(adata)
    sc.pp.neighbors(adata, use_rep="X_vae")
    assert adata.obsp["connectivities"].shape == (12_000, 12_000)
    assert adata.uns["neighbors"]["params"]["n_neighbors"] == 15
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False)
    assert adata.obs["leiden"].nunique() > 1


def test_training_lowers_the_loss_and_reaches_full_kl_weight(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc)
    model.train(max_epochs=12, **QUIET)
    loss = model.history["train_loss"]["train_loss"].to_numpy()
    assert loss[-1] < loss[0]
    kl_weight = model.history["kl_weight"]["kl_weight"].to_numpy()
    assert kl_weight[0] < 1.0
    assert kl_weight[-1] == pytest.approx(1.0)


def test_vae_elbo_marginal_ll_and_reconstruction_error(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc)
    model.train(max_epochs=10, **QUIET)
    elbo = float(model.get_elbo())
    ll = model.get_marginal_ll(n_mc_samples=50)
    rec = float(model.get_reconstruction_error()["reconstruction_loss"])
    assert np.isfinite([elbo, ll, rec]).all()
    # log p(x) >= ELBO, and the ELBO is below -reconstruction error by the KL
    assert ll > elbo
    assert elbo < -rec
    per_cell = model.get_marginal_ll(n_mc_samples=20, return_mean=False)
    assert per_cell.shape == (700,)


def test_n_samples_is_stored_and_used(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc, n_samples=4)
    assert model.module.n_samples == 4
    model.train(max_epochs=2, **QUIET)
    assert np.isfinite(model.history["train_loss"]["train_loss"].to_numpy(dtype=float)).all()


def test_linear_autoencoder_spans_the_principal_subspace():
    # A rank-3 signal with a clear spectral gap in 20-D. The squared-error optimum of a
    # linear AE is exactly the top-3 PCA subspace of the same data, so any angle comes
    # from stochastic optimisation. Bound: 5 degrees (sin 5° ≈ 0.087). A random 3-D
    # subspace sits near 90° from it, and 0.9° was measured here after 60 epochs.
    rng = np.random.default_rng(0)
    n, p, k = 2000, 20, 3
    basis = np.linalg.qr(rng.normal(size=(p, k)))[0]
    x = (rng.normal(size=(n, k)) * [5, 4, 3]) @ basis.T + 0.5 * rng.normal(size=(n, p))
    x -= x.mean(0)
    adata = ad.AnnData(x.astype(np.float32))
    mixvi.model.AE.setup_anndata(adata)
    model = mixvi.model.AE(adata, n_latent=k, linear=True, learn_scale=False)
    model.train(max_epochs=60, lr=1e-2, train_size=1.0, **QUIET)
    decoder_columns = model.module.px.loc.fc_layers[0][0].weight.detach().numpy()
    components = PCA(k).fit(x).components_.T
    angles = np.degrees(subspace_angles(decoder_columns, components))
    assert angles.max() < 5.0, angles
    z = model.get_latent_representation()
    assert z.shape == (n, k)


def test_ae_results_and_reconstruction(pbmc):
    mixvi.model.AE.setup_anndata(pbmc)
    model = mixvi.model.AE(pbmc, n_latent=6)
    model.train(max_epochs=5, **QUIET)
    model.write_results(pbmc)
    assert pbmc.obsm["X_ae"].shape == (700, 6)
    assert model.reconstruct(indices=[0, 1, 2]).shape == (3, pbmc.n_vars)
    assert np.isfinite(model.get_reconstruction_error())


@pytest.mark.parametrize("cls", [mixvi.model.AE, mixvi.model.VAE])
def test_save_load_round_trip_gives_identical_latents(pbmc, tmp_path, cls):
    cls.setup_anndata(pbmc)
    model = cls(pbmc, n_latent=5, n_layers=2, input_dropout_rate=0.2)
    model.train(max_epochs=3, **QUIET)
    before = model.get_latent_representation()
    np.testing.assert_array_equal(
        model.get_latent_representation(), before
    )  # no masking at inference
    model.save(tmp_path / "model", save_anndata=False)
    loaded = cls.load(tmp_path / "model", adata=pbmc)
    np.testing.assert_array_equal(loaded.get_latent_representation(), before)
    assert loaded.module.encoder.body.n_layers == 2
    assert loaded.module.input_dropout_rate == 0.2


def _cvae(counts_adata, **kwargs):
    mixvi.model.CVAE.setup_anndata(counts_adata, condition_key="condition", layer="counts")
    model = mixvi.model.CVAE(counts_adata, likelihood="nb", n_latent=4, **kwargs)
    model.train(max_epochs=60, lr=3e-3, **QUIET)
    return model


def test_cvae_counterfactual_moves_the_condition_genes(counts_adata):
    model = _cvae(counts_adata)
    model.write_results()
    assert counts_adata.obsm["X_cvae"].shape == (300, 4)
    control = np.flatnonzero(counts_adata.obs["condition"] == "A")
    as_control = model.reconstruct(indices=control)
    as_stimulated = model.decode_counterfactual("B", indices=control)
    fold = as_stimulated.mean(0) / as_control.mean(0)
    # B quadruples the first 10 genes' rates. At a fixed library size that is a 2.3-fold
    # rise of their share and a 0.57-fold fall of the others' (see counts_adata).
    assert fold[:10].mean() > 1.5
    assert fold[10:].mean() < 0.85
    with pytest.raises(ValueError, match="Unknown condition 'C'"):
        model.decode_counterfactual("C")


def test_cvae_counterfactual_draws_counts_seeded_and_centred_on_the_mean(counts_adata):
    model = _cvae(counts_adata)
    control = np.flatnonzero(counts_adata.obs["condition"] == "A")
    mean = model.decode_counterfactual("B", indices=control)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    draws = model.decode_counterfactual("B", indices=control, sample=True, seed=7)
    assert torch.rand(1) == before  # a seeded draw leaves the global generator alone
    np.testing.assert_array_equal(draws, np.round(draws))
    assert (draws >= 0).all() and (draws == 0).any() and not (mean == 0).any()
    again = model.decode_counterfactual("B", indices=control, sample=True, seed=7)
    np.testing.assert_array_equal(draws, again)
    other = model.decode_counterfactual("B", indices=control, sample=True, seed=8)
    assert not np.array_equal(draws, other)
    # the draws scatter around the mean: per gene, their average over the cells is close
    np.testing.assert_allclose(draws.mean(0), mean.mean(0), rtol=0.25, atol=0.5)


def test_cvae_generates_per_condition(counts_adata):
    model = _cvae(counts_adata)
    a = model.generate(200, condition="A", seed=1)
    b = model.generate(200, condition="B", seed=1)
    assert a.shape == b.shape == (200, 40)
    assert (b[:, :10].mean() / a[:, :10].mean()) > 1.5  # 2.3 in truth, at a fixed library
    draws = model.generate(5, condition="A", sample=True, seed=0)
    np.testing.assert_array_equal(draws, np.round(draws))
    with pytest.raises(ValueError, match="Pass condition="):
        model.generate(3)


def test_cvae_save_load_keeps_conditions(counts_adata, tmp_path):
    mixvi.model.CVAE.setup_anndata(counts_adata, condition_key="condition", layer="counts")
    model = mixvi.model.CVAE(counts_adata, likelihood="zinb", n_latent=3)
    model.train(max_epochs=2, **QUIET)
    model.save(tmp_path / "cvae", save_anndata=True)
    loaded = mixvi.model.CVAE.load(tmp_path / "cvae")
    assert loaded.conditions == ["A", "B"]
    np.testing.assert_array_equal(
        loaded.get_latent_representation(), model.get_latent_representation()
    )


def test_cvae_reference_mapping_with_a_new_condition(counts_adata):
    model = _cvae(counts_adata)
    query = counts_adata[:60].copy()
    query.obs["condition"] = "C"  # a category the reference never saw
    query_model = mixvi.model.CVAE.load_query_data(query, model)
    frozen = model.module.encoder.body.fc.fc_layers[0][0].weight.detach().clone()
    query_model.train(max_epochs=3, **QUIET)
    w = query_model.module.encoder.body.fc.fc_layers[0][0].weight.detach()
    n_genes = counts_adata.n_vars
    # the reference's gene weights stay frozen; the new condition's column is learned
    torch.testing.assert_close(w[:, :n_genes], frozen[:, :n_genes])
    assert w.shape[1] == frozen.shape[1] + 1
    assert query_model.conditions == ["A", "B", "C"]
    assert query_model.get_latent_representation().shape == (60, 4)


def test_categorical_covariates_are_one_hot_inputs(counts_adata):
    counts_adata.obs["donor"] = np.tile(["d1", "d2", "d3"], 100)
    mixvi.model.CVAE.setup_anndata(
        counts_adata,
        condition_key="condition",
        categorical_covariate_keys=["donor"],
        layer="counts",
    )
    model = mixvi.model.CVAE(counts_adata, likelihood="poisson")
    first = model.module.encoder.body.fc.fc_layers[0][0]
    assert first.in_features == 40 + 2 + 3
    model.train(max_epochs=1, **QUIET)
    assert model.generate(2, condition="B", covariates={"donor": "d3"}).shape == (2, 40)
    with pytest.raises(ValueError, match="Unknown category 'd9'"):
        model.generate(2, condition="B", covariates={"donor": "d9"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_uses_the_gpu_when_present(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    model = mixvi.model.VAE(pbmc)
    model.train(max_epochs=2, accelerator="auto", **QUIET)
    assert model.device.type == "cuda"
    assert np.isfinite(model.get_latent_representation()).all()
