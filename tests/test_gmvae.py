"""The Gaussian-mixture VAE: maths, clustering without collapse, outputs, save/load."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import QUIET
from scvi import REGISTRY_KEYS
from sklearn.metrics import adjusted_rand_score
from torch.distributions import Normal, kl_divergence

import mixvi
from mixvi.metrics import clustering_scores
from mixvi.module import GMVAEModule


def test_mixture_kl_matches_its_definition():
    torch.manual_seed(0)
    module = GMVAEModule(6, n_components=3, n_latent=2)
    x = torch.randn(5, 6)
    tensors = {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: torch.zeros(5, 1, dtype=torch.long)}
    inf, _, out = module(tensors)
    qz, z = inf["qz"], inf["z"]
    log_pi = torch.log_softmax(module.prior.logits, 0)
    comps = Normal(module.prior.means, torch.exp(0.5 * module.prior.log_var))
    log_pzc = comps.log_prob(z.unsqueeze(1)).sum(-1)  # (5, 3)
    gamma = torch.softmax(log_pi + log_pzc, -1)
    kl_each = torch.stack(
        [
            kl_divergence(
                qz, Normal(module.prior.means[c], torch.exp(0.5 * module.prior.log_var[c]))
            ).sum(-1)
            for c in range(3)
        ],
        dim=-1,
    )
    expected = (gamma * kl_each).sum(-1) + (gamma * (gamma.log() - log_pi)).sum(-1)
    torch.testing.assert_close(out.kl_local["kl_local"], expected)
    torch.testing.assert_close(module.log_prior(z), torch.logsumexp(log_pi + log_pzc, -1))
    torch.testing.assert_close(module.responsibilities(z).sum(-1), torch.ones(5))


def test_log_space_is_stable_far_from_every_component():
    module = GMVAEModule(4, n_components=4, n_latent=3)
    z = torch.full((2, 3), 1e3)
    assert torch.isfinite(module.log_prior(z)).all()
    assert torch.isfinite(module.responsibilities(z)).all()


def _blobs(seed=0):
    # 5 well-separated clusters in 10-D, pushed through a random nonlinear map into 100-D
    rng = np.random.default_rng(seed)
    n_per, k, d, big = 200, 5, 10, 100
    labels = np.repeat(np.arange(k), n_per)
    z = rng.normal(size=(k, d))[labels] * 6 + rng.normal(size=(k * n_per, d))
    w1 = rng.normal(size=(d, 64)) / np.sqrt(d)
    w2 = rng.normal(size=(64, big)) / 8
    x = np.tanh(z @ w1) @ w2 + 0.05 * rng.normal(size=(k * n_per, big))
    x = (x - x.mean(0)) / x.std(0)
    return ad.AnnData(x.astype(np.float32)), labels


@pytest.fixture(scope="module")
def trained_blobs():
    mixvi.settings.seed = 0
    adata, labels = _blobs()
    mixvi.model.GMVAE.setup_anndata(adata)
    model = mixvi.model.GMVAE(adata, n_components=5, n_latent=5, n_hidden=64)
    model.train(max_epochs=70, pretrain_epochs=30, **QUIET)
    return model, adata, labels


def test_clusters_come_back_without_collapse(trained_blobs):
    model, adata, labels = trained_blobs
    predicted = model.get_cluster_assignments()
    assert adjusted_rand_score(labels, predicted) >= 0.9
    assert np.bincount(predicted, minlength=5).min() > 0
    assert model.collapsed_components(0.01) == []


def test_probabilities_and_results(trained_blobs):
    model, adata, _ = trained_blobs
    probs = model.get_cluster_probabilities()
    assert probs.shape == (1000, 5)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    model.write_results(adata)
    assert adata.obsm["X_gmvae"].shape == (1000, 5)
    np.testing.assert_allclose(adata.obsm["X_gmvae"], model.get_latent_representation(), atol=1e-6)
    assert adata.obs["gmvae_cluster"].dtype == "category"
    assert list(adata.obs["gmvae_cluster"].cat.categories) == ["0", "1", "2", "3", "4"]
    np.testing.assert_array_equal(adata.obsm["gmvae_probabilities"], probs)
    np.testing.assert_allclose(model.component_weights.sum(), 1.0, rtol=1e-6)


def test_generate_from_one_component_lands_in_it(trained_blobs):
    model, adata, _ = trained_blobs
    for k in (0, 3):
        x = model.generate(50, component=k, seed=0)
        assert x.shape == (50, 100)
        fake = ad.AnnData(x.astype(np.float32))
        assert (model.get_cluster_assignments(fake) == k).mean() > 0.8
    with pytest.raises(ValueError, match="component must be in"):
        model.generate(2, component=7)


def test_save_load_keeps_the_clusters(trained_blobs, tmp_path):
    model, adata, _ = trained_blobs
    model.save(tmp_path / "gmvae", save_anndata=False)
    loaded = mixvi.model.GMVAE.load(tmp_path / "gmvae", adata=adata)
    np.testing.assert_array_equal(loaded.get_cluster_assignments(), model.get_cluster_assignments())
    np.testing.assert_allclose(
        loaded.get_cluster_probabilities(), model.get_cluster_probabilities()
    )


def test_conditional_gmvae_takes_the_condition(counts_adata):
    mixvi.model.GMVAE.setup_anndata(counts_adata, layer="counts", condition_key="condition")
    model = mixvi.model.GMVAE(counts_adata, n_components=3, likelihood="nb", n_hidden=32)
    # counts with a condition: hidden layers and a 10-D latent by default, the first layer
    # taking the condition
    assert model.module.encoder.body.n_layers == 2
    assert model.module.n_latent == 10
    assert model.module.encoder.body.fc.fc_layers[0][0].in_features == 40 + 2
    assert model.module.library_target is None  # log1p of the raw counts, as chosen there
    model.train(max_epochs=3, pretrain_epochs=1, **QUIET)
    assert model.get_cluster_probabilities().shape == (300, 3)
    assert model.generate(4, component=1, condition="B").shape == (4, 40)


@pytest.mark.parametrize(
    ("likelihood", "given", "layers", "latent"),
    [
        ("nb", {}, 0, 50),
        ("zinb", {}, 0, 50),
        ("poisson", {}, 0, 50),
        ("normal", {}, 2, 10),
        ("nb", {"n_layers": 2}, 2, 50),
        ("nb", {"n_latent": 5}, 0, 5),
    ],
)
def test_counts_get_a_linear_50d_model_by_default(
    counts_adata, tmp_path, likelihood, given, layers, latent
):
    # no condition: a condition needs hidden layers (test_conditional_gmvae_takes_the_condition)
    mixvi.model.GMVAE.setup_anndata(counts_adata, layer="counts")
    model = mixvi.model.GMVAE(counts_adata, n_components=3, likelihood=likelihood, **given)
    assert model.module.encoder.body.n_layers == layers
    assert model.module.decoder.n_layers == layers
    assert model.module.n_latent == latent
    assert model.init_params_["non_kwargs"]["n_layers"] == layers
    assert model.init_params_["non_kwargs"]["n_latent"] == latent
    model.save(tmp_path / "m", save_anndata=False)
    loaded = mixvi.model.GMVAE.load(tmp_path / "m", adata=counts_adata)
    assert loaded.module.encoder.body.n_layers == layers
    assert loaded.module.n_latent == latent


def test_counts_reach_the_encoder_scaled_to_the_median_library(counts_adata, tmp_path, capsys):
    mixvi.model.GMVAE.setup_anndata(counts_adata, layer="counts")
    model = mixvi.model.GMVAE(counts_adata, n_components=3, likelihood="nb")
    median = np.median(counts_adata.layers["counts"].sum(axis=1))
    assert model.module.library_target == pytest.approx(median)
    x = torch.as_tensor(counts_adata.layers["counts"][:5])
    model.module.eval()
    # a cell and the same cell sequenced twice as deep read the same to the encoder, which
    # reads log1p(x / library * median); the decoder keeps the observed library
    one, library = model.module._encoder_input(x)
    two, library_2 = model.module._encoder_input(2 * x)
    torch.testing.assert_close(one, two)
    torch.testing.assert_close(2 * library, library_2)
    torch.testing.assert_close(one, torch.log1p(x / x.sum(1, keepdim=True) * float(median)))
    raw = mixvi.model.GMVAE(counts_adata, n_components=3, likelihood="nb", normalize_input=False)
    assert raw.module.library_target is None
    raw.module.eval()
    torch.testing.assert_close(raw.module._encoder_input(x)[0], torch.log1p(x))
    # the printed model (scvi-tools prints it with rich) says which input its encoder reads
    capsys.readouterr()
    repr(model)
    assert "normalize_input=True" in capsys.readouterr().out
    repr(raw)
    assert "normalize_input=False" in capsys.readouterr().out
    model.save(tmp_path / "m", save_anndata=False)
    loaded = mixvi.model.GMVAE.load(tmp_path / "m", adata=counts_adata)
    assert loaded.module.library_target == model.module.library_target
    with pytest.raises(ValueError, match="needs a count likelihood"):
        mixvi.model.GMVAE(counts_adata, n_components=3, likelihood="normal", normalize_input=True)
    with pytest.raises(ValueError, match="library_target must be None or > 0"):
        GMVAEModule(6, likelihood="nb", library_target=0.0)


@pytest.mark.parametrize(
    ("data", "likelihood", "condition", "start"),
    [
        ("counts", "nb", False, "pca"),  # plain counts: Leiden on the input's PCA
        ("counts", "nb", True, "gmm"),  # a condition: VAE pretraining, Gaussian blobs
        ("pbmc", "normal", False, "umap"),  # scaled values: the UMAP start
    ],
)
def test_the_auto_start_depends_on_the_data(counts_adata, pbmc, data, likelihood, condition, start):
    adata = counts_adata if data == "counts" else pbmc
    setup = {"layer": "counts"} if data == "counts" else {}
    if condition:
        setup["condition_key"] = "condition"
    mixvi.model.GMVAE.setup_anndata(adata, **setup)
    model = mixvi.model.GMVAE(adata, n_components=3, likelihood=likelihood, n_hidden=16)
    model.train(max_epochs=3, pretrain_epochs=1, **QUIET)
    assert model.start_init_ == start
    assert model.phase_ == "trained"
    # a pinned start overrides the default on the same data
    pinned = mixvi.model.GMVAE(adata, n_components=3, likelihood=likelihood, n_hidden=16)
    pinned.train(max_epochs=3, pretrain_epochs=1, init="kmeans", **QUIET)
    assert pinned.start_init_ == "kmeans"


def _epochs(model) -> int:
    return len(model.history["elbo_train"])


def test_max_epochs_counts_every_phase_of_the_call(pbmc):
    mixvi.model.GMVAE.setup_anndata(pbmc)
    model = mixvi.model.GMVAE(pbmc, n_components=3, n_hidden=16, n_layers=1)
    model.train(max_epochs=8, pretrain_epochs=2, anchor_epochs=1, **QUIET)
    assert _epochs(model) == 8  # 2 pretraining + 1 anchored + 5 free
    assert model.phase_ == "trained"
    model.train(max_epochs=4, pretrain_epochs=2, **QUIET)  # trained: free epochs only
    assert _epochs(model) == 12  # the history carries on across train() calls
    # by default a third of the epochs pretrain, and a quarter of the rest are anchored
    fresh = mixvi.model.GMVAE(pbmc, n_components=3, n_hidden=16, n_layers=1)
    fresh.train(max_epochs=9, **QUIET)
    assert _epochs(fresh) == 9
    assert len(fresh.pretrain_history_["elbo_train"]) == 3
    assert len(fresh.anchor_history_["elbo_train"]) == 1
    with pytest.raises(ValueError, match="is less than pretrain_epochs"):
        mixvi.model.GMVAE(pbmc, n_components=3).train(
            max_epochs=3, pretrain_epochs=3, anchor_epochs=1
        )


def test_no_pretraining_and_no_start_trains_free_epochs_only(pbmc):
    mixvi.model.GMVAE.setup_anndata(pbmc)
    model = mixvi.model.GMVAE(pbmc, n_components=3, n_hidden=16, n_layers=1)
    means = model.module.prior.means.detach().clone()
    model.train(max_epochs=4, pretrain_epochs=0, init=None, **QUIET)
    assert _epochs(model) == 4 and model.pretraining_ == "none"
    assert model.phase_seconds_["mixture_start"] == model.phase_seconds_["anchored"] == 0
    assert not torch.allclose(model.module.prior.means, means)  # trained, never re-started


def test_the_phases_run_one_at_a_time_and_train_continues_from_there(pbmc, monkeypatch):
    mixvi.model.GMVAE.setup_anndata(pbmc)
    model = mixvi.model.GMVAE(pbmc, n_components=3, n_hidden=16, n_layers=1)
    assert model.phase_ == "built"
    model.pretrain(3, **QUIET)
    assert (model.phase_, model.pretraining_, _epochs(model)) == ("pretrained", "ae", 3)
    start = model.init_mixture("kmeans", restarts=2, seed=1)
    assert model.phase_ == "started"
    np.testing.assert_allclose(model.component_weights, start.mean(0), atol=1e-3)
    prior = model.module.prior.means.detach().clone()

    def no_more(*args, **kwargs):
        raise AssertionError("train() ran a phase that had already run")

    monkeypatch.setattr(mixvi.model.GMVAE, "pretrain", no_more)
    monkeypatch.setattr(mixvi.model.GMVAE, "init_mixture", no_more)
    # the user's own start feeds the anchored phase, then the free epochs follow
    model.train(max_epochs=4, anchor_epochs=2, **QUIET)
    assert _epochs(model) == 3 + 4
    assert len(model.anchor_history_["elbo_train"]) == 2
    assert model.phase_ == "trained" and model.start_responsibilities_ is None
    assert not torch.allclose(model.module.prior.means, prior)  # trained from the user's start


def test_each_phase_keeps_a_history_of_its_own_epochs(pbmc):
    mixvi.model.GMVAE.setup_anndata(pbmc)
    model = mixvi.model.GMVAE(pbmc, n_components=3, n_hidden=16, n_layers=1)
    model.train(max_epochs=6, pretrain_epochs=2, anchor_epochs=1, **QUIET)
    pretrain = model.pretrain_history_["elbo_train"].to_numpy(dtype=float).ravel()
    anchor = model.anchor_history_["elbo_train"].to_numpy(dtype=float).ravel()
    whole = model.history["elbo_train"].to_numpy(dtype=float).ravel()
    assert (len(pretrain), len(anchor), len(whole)) == (2, 1, 2 + 1 + 3)
    # copies, not views of the live history: the later phases did not extend them
    np.testing.assert_array_equal(whole[:2], pretrain)
    np.testing.assert_array_equal(whole[2:3], anchor)
    assert model.pretrain_history_["elbo_train"] is not model.history["elbo_train"]
    # every phase ran, so each was timed; the UMAP is part of the mixture start
    seconds = model.phase_seconds_
    assert set(seconds) == {"pretraining", "mixture_start", "umap", "anchored", "free"}
    assert min(seconds.values()) > 0
    assert seconds["umap"] <= seconds["mixture_start"]


def test_phases_that_do_not_run_take_no_time(pbmc):
    mixvi.model.GMVAE.setup_anndata(pbmc)
    model = mixvi.model.GMVAE(pbmc, n_components=3, n_hidden=16, n_layers=1)
    model.train(max_epochs=3, pretrain_epochs=1, init="gmm", **QUIET)  # no UMAP, no anchor
    assert model.phase_seconds_["umap"] == model.phase_seconds_["anchored"] == 0
    assert model.phase_seconds_["mixture_start"] > 0
    model.train(max_epochs=2, **QUIET)  # trained already: only the free phase runs again
    assert model.phase_seconds_["free"] > 0
    assert sum(model.phase_seconds_.values()) == model.phase_seconds_["free"]


def test_phases_out_of_order_are_refused_before_any_work(pbmc):
    mixvi.model.GMVAE.setup_anndata(pbmc)
    model = mixvi.model.GMVAE(pbmc, n_components=3, n_hidden=16, n_layers=1)
    with pytest.raises(ValueError, match="call pretrain"):
        model.init_mixture()
    with pytest.raises(ValueError, match="needs a mixture start"):
        model.train_anchored(2)
    assert model.history_ is None  # nothing was trained
    model.pretrain(1, **QUIET)
    with pytest.raises(ValueError, match="must have shape"):
        model.train_anchored(1, responsibilities=np.ones((5, 3)) / 3)
    model.init_mixture("kmeans")
    with pytest.raises(ValueError, match="pretraining now would move"):
        model.pretrain(1)
    assert _epochs(model) == 1


def test_more_components_than_cells_is_refused(pbmc):
    small = pbmc[:5].copy()
    mixvi.model.GMVAE.setup_anndata(small)
    with pytest.raises(
        ValueError, match="n_components=10 is larger than the number of observations"
    ):
        mixvi.model.GMVAE(small, n_components=10)


def test_anchor_fixes_q_c_to_the_given_responsibilities():
    torch.manual_seed(0)
    module = GMVAEModule(6, n_components=3, n_latent=2)
    x = torch.randn(4, 6)
    rows = torch.tensor([[2], [0], [3], [1]])
    tensors = {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: torch.zeros(4, 1, dtype=torch.long)}
    anchor = torch.log_softmax(torch.randn(5, 3), -1)
    anchored = {"phase": "anchored", "anchor_log_gamma": anchor}
    with pytest.raises(RuntimeError, match="row indices"):
        module(tensors, loss_kwargs=anchored)
    with pytest.raises(ValueError, match="needs anchor_log_gamma"):
        module(tensors, loss_kwargs={"phase": "anchored"})
    with pytest.raises(ValueError, match="phase must be one of"):
        module(tensors, loss_kwargs={"phase": "warm-up"})
    inf, _, out = module({**tensors, REGISTRY_KEYS.INDICES_KEY: rows}, loss_kwargs=anchored)
    gamma = anchor[rows.ravel()].exp()
    qz = inf["qz"]
    kl_each = torch.stack(
        [
            kl_divergence(
                qz, Normal(module.prior.means[c], torch.exp(0.5 * module.prior.log_var[c]))
            ).sum(-1)
            for c in range(3)
        ],
        dim=-1,
    )
    log_pi = module.prior.log_weights()
    expected = (gamma * kl_each).sum(-1) + (gamma * (gamma.log() - log_pi)).sum(-1)
    torch.testing.assert_close(out.kl_local["kl_local"], expected)
    # the free phase (the default) is back to p(c|z): the KL changes
    _, _, free = module({**tensors, REGISTRY_KEYS.INDICES_KEY: rows})
    assert not torch.allclose(free.kl_local["kl_local"], expected)


@pytest.mark.parametrize("method", ["gmm", "umap", "leiden", "pca", "kmeans"])
def test_init_mixture_finds_the_blobs_without_labels(method):
    mixvi.settings.seed = 0
    adata, labels = _blobs(seed=1)
    mixvi.model.GMVAE.setup_anndata(adata)
    model = mixvi.model.GMVAE(adata, n_components=5, n_latent=5, n_hidden=64)
    model.pretrain(20, **QUIET)
    start = model.init_mixture(method)
    assert start.shape == (1000, 5)
    np.testing.assert_allclose(start.sum(1), 1.0, rtol=1e-5)
    assert adjusted_rand_score(labels, start.argmax(1)) >= 0.9
    np.testing.assert_allclose(model.component_weights, start.mean(0), atol=1e-3)
    with pytest.raises(ValueError, match="init must be"):
        model.init_mixture("spectral")
    with pytest.raises(ValueError, match="init must be"):
        model.train(max_epochs=1, init="spectral")
    if method in ("kmeans", "leiden", "pca"):  # hard clusters: each cell wholly in one component
        assert set(np.unique(start)) == {0.0, 1.0}
    if method == "umap":
        wide = model.init_mixture("umap", umap_neighbors=50)
        assert adjusted_rand_score(labels, wide.argmax(1)) >= 0.9
        with pytest.raises(ValueError, match="umap_neighbors must be"):
            model.init_mixture("umap", umap_neighbors=1)
        before = model.module.prior.means.detach().clone()
        with pytest.raises(ValueError, match="umap_neighbors must be"):
            model.train(max_epochs=1, start_kwargs={"umap_neighbors": 1})
        torch.testing.assert_close(model.module.prior.means, before)  # refused before training
        # on a random 300 of the 1,000 cells, the rest placed by their neighbours
        sub = model.init_mixture("umap", umap_cells=300)
        assert adjusted_rand_score(labels, sub.argmax(1)) >= 0.9
        before = model.module.prior.means.detach().clone()  # the subsampled start set the prior
        with pytest.raises(ValueError, match="umap_cells must be"):
            model.train(max_epochs=1, start_kwargs={"umap_cells": 1})
        torch.testing.assert_close(model.module.prior.means, before)


def test_the_umap_start_embeds_at_most_umap_cells_and_places_the_rest(monkeypatch):
    from mixvi.model import _mixture_start

    rng = np.random.default_rng(0)
    centres = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 6.0]])
    labels = rng.integers(0, 3, 900)
    z = (centres[labels] + rng.normal(0, 0.5, (900, 2))).astype(np.float32)
    embedded = []
    real = _mixture_start.umap_embedding

    def recording(x, *args, **kwargs):
        embedded.append(x.shape[0])
        return real(x, *args, **kwargs)

    monkeypatch.setattr(_mixture_start, "umap_embedding", recording)
    sub = _mixture_start.mixture_start(z, 3, "umap", 1, 15, 0, umap_cells=200)
    full = _mixture_start.mixture_start(z, 3, "umap", 1, 15, 0, umap_cells=None)
    assert embedded == [200, 900]
    assert sub.responsibilities.shape == (900, 3)
    np.testing.assert_allclose(sub.responsibilities.sum(1), 1.0, rtol=1e-5)
    assert adjusted_rand_score(labels, sub.responsibilities.argmax(1)) == 1.0
    assert (
        adjusted_rand_score(full.responsibilities.argmax(1), sub.responsibilities.argmax(1)) == 1.0
    )
    # the moments come from every cell, so the means sit at the blobs' centres either way
    order = np.argsort(sub.means[:, 0] + 10 * sub.means[:, 1])
    np.testing.assert_allclose(sub.means[order], centres[[0, 1, 2]], atol=0.15)
    # more cells than there are: all of them, and no neighbour lookup
    assert _mixture_start._subsample(50, 100, 0).tolist() == list(range(50))
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="umap_cells must be"):
            _mixture_start.mixture_start(z, 3, "umap", 1, 15, 0, umap_cells=bad)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_the_kmeans_start_is_the_moments_of_hard_clusters(covariance):
    from sklearn.mixture import GaussianMixture

    from mixvi.model import _mixture_start

    rng = np.random.default_rng(0)
    centres = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 6.0]])
    labels = rng.integers(0, 3, 900)
    z = centres[labels] + rng.normal(0, 0.5, (900, 2)) * [1.0, 2.0]
    start = _mixture_start.mixture_start(z, 3, "kmeans", 2, 15, 0, covariance=covariance)
    assert adjusted_rand_score(labels, start.responsibilities.argmax(1)) == 1.0
    assert set(np.unique(start.responsibilities)) == {0.0, 1.0}
    order = np.argsort(start.means[:, 0] + 10 * start.means[:, 1])
    np.testing.assert_allclose(start.means[order], centres, atol=0.15)
    np.testing.assert_allclose(start.weights[order], np.bincount(labels) / 900, atol=1e-6)
    variances = (
        start.variances if covariance == "full" else np.stack([np.diag(v) for v in start.variances])
    )
    # the axes' spreads are 0.5 and 1.0: the moments, not k-means' equal spheres
    np.testing.assert_allclose(variances[:, 0, 0], 0.25, rtol=0.2)
    np.testing.assert_allclose(variances[:, 1, 1], 1.0, rtol=0.2)
    # the reported log-likelihood is z's under that mixture (sklearn scores it independently)
    gmm = GaussianMixture(3, covariance_type="full")
    gmm.weights_, gmm.means_, gmm.covariances_ = start.weights, start.means, variances
    gmm.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(variances))
    assert start.log_likelihood == pytest.approx(gmm.score(z), rel=1e-6)


def test_input_pcs_are_the_scanpy_pipelines_pca_of_the_encoder_input():
    import scanpy as sc
    import scipy.sparse as sp

    from mixvi.model._mixture_start import input_pcs

    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(2.0, 2.0, (200, 40)) * rng.uniform(0.3, 3, (200, 1)))
    counts[0] = 0  # an empty cell stays at zero rather than dividing by zero
    target = float(np.median(counts.sum(1)))
    expected = ad.AnnData(sp.csr_matrix(counts.astype(np.float32)))
    sc.pp.normalize_total(expected, target_sum=target)
    sc.pp.log1p(expected)
    sc.pp.pca(expected, n_comps=10, random_state=0)
    for matrix in (sp.csr_matrix(counts), counts):  # sparse, and dense read by blocks
        pcs = input_pcs(matrix, target, log1p=True, n_comps=10, seed=0)
        assert pcs.shape == (200, 10) and np.isfinite(pcs).all()
        # the same components up to each one's sign
        signs = np.sign((pcs * expected.obsm["X_pca"]).sum(0))
        np.testing.assert_allclose(pcs * signs, expected.obsm["X_pca"], atol=2e-3)
    # values that are not counts are taken as they are; components capped by the features
    scaled = rng.normal(size=(30, 4))
    assert input_pcs(scaled, n_comps=50).shape == (30, 3)


def test_the_pca_start_clusters_the_input_pcs_and_sets_the_prior_in_the_latent():
    from mixvi.model import mixture_start

    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 100)
    pcs = rng.normal(size=(300, 5)) + 8.0 * np.eye(3, 5)[truth]  # three blobs
    z = rng.normal(size=(300, 4))  # a latent with no clusters in it
    start = mixture_start(z, 3, "pca", input_pcs=pcs, seed=0)
    assert adjusted_rand_score(truth, start.responsibilities.argmax(1)) == 1.0
    # the prior's moments are those of the clusters in z, not in the pcs
    for c in range(3):
        members = start.responsibilities[:, c] == 1
        np.testing.assert_allclose(start.means[c], z[members].mean(0), atol=1e-6)
    leiden = mixture_start(z, 3, "leiden", seed=0)  # the same z alone finds no blobs
    assert adjusted_rand_score(truth, leiden.responsibilities.argmax(1)) < 0.2
    with pytest.raises(ValueError, match="needs input_pcs"):
        mixture_start(z, 3, "pca", seed=0)
    with pytest.raises(ValueError, match="needs input_pcs"):
        mixture_start(z, 3, "pca", input_pcs=pcs[:10], seed=0)


def test_leiden_clusters_keep_a_small_cluster_and_always_return_k():
    from mixvi.model import leiden_clusters

    rng = np.random.default_rng(0)
    centres = np.array([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0], [0.0, -8.0]])
    sizes = [600, 300, 80, 20]  # a 2 % cluster, as rare cell types are
    labels = np.repeat(np.arange(4), sizes)
    z = centres[labels] + rng.normal(0, 0.6, (sum(sizes), 2))
    found = leiden_clusters(z, 4, seed=0)
    assert adjusted_rand_score(labels, found) == 1.0
    # the same seed gives the same partition
    np.testing.assert_array_equal(found, leiden_clusters(z, 4, seed=0))
    # K that no resolution reaches on four blobs: merged or split to exactly K, all used
    for k in (2, 3, 6, 9):
        assert sorted(np.unique(leiden_clusters(z, k, seed=0))) == list(range(k))
    three = leiden_clusters(z, 3, seed=0)
    # merging joins the smallest blob to its nearest, and keeps the other blobs whole
    assert adjusted_rand_score(labels[labels < 2], three[labels < 2]) == 1.0
    # identical points split by index rather than looping
    assert sorted(np.unique(leiden_clusters(np.zeros((10, 2)), 3, seed=0))) == [0, 1, 2]
    with pytest.raises(ValueError, match="n_clusters must be between 1 and 1000"):
        leiden_clusters(z, 1001)


def test_row_index_is_filled_for_new_anndata(trained_blobs):
    model, adata, _ = trained_blobs
    np.testing.assert_array_equal(adata.obs["_mixvi_row"], np.arange(adata.n_obs))
    other = ad.AnnData(adata.X[::-1][:37].copy())  # no row column, other order and size
    latent = model.get_latent_representation(other)
    assert latent.shape == (37, 5)
    np.testing.assert_array_equal(other.obs["_mixvi_row"], np.arange(37))
    np.testing.assert_allclose(
        latent[0], model.get_latent_representation(indices=[adata.n_obs - 1])[0], atol=1e-5
    )


def test_compare_n_components_prefers_enough_components():
    adata, _ = _blobs(seed=2)
    mixvi.model.GMVAE.setup_anndata(adata)
    table = mixvi.model.GMVAE.compare_n_components(
        adata,
        [1, 5],
        model_kwargs={"n_latent": 5, "n_hidden": 64},
        train_kwargs={"max_epochs": 50, "pretrain_epochs": 20, **QUIET},
    )
    assert list(table.index) == [1, 5]
    assert set(table.columns) >= {"heldout_elbo", "train_elbo", "n_collapsed", "collapsed"}
    assert np.isfinite(table[["heldout_elbo", "train_elbo"]].to_numpy()).all()
    # one Gaussian cannot hold five separated blobs, so held-out cells score worse
    assert table.loc[5, "heldout_elbo"] > table.loc[1, "heldout_elbo"]
    assert table.loc[1, "n_collapsed"] == 0
    with pytest.raises(ValueError, match="train_size"):
        mixvi.model.GMVAE.compare_n_components(adata, [2], train_size=1.0)


def test_full_covariance_kl_and_density_match_torch_distributions():
    from torch.distributions import MultivariateNormal

    torch.manual_seed(0)
    module = GMVAEModule(6, n_components=3, n_latent=4, covariance="full")
    with torch.no_grad():
        for p in (module.prior.tril, module.prior.log_var, module.prior.means):
            p.normal_()
    tril = module.prior.scale_tril()
    assert torch.all(torch.triu(tril, diagonal=1) == 0)
    q_mean, q_var = torch.randn(5, 4), torch.rand(5, 4) + 0.1
    q = MultivariateNormal(q_mean, scale_tril=torch.diag_embed(q_var.sqrt()))
    components = [MultivariateNormal(module.prior.means[c], scale_tril=tril[c]) for c in range(3)]
    expected = torch.stack([kl_divergence(q, p) for p in components], -1)
    torch.testing.assert_close(
        module.prior.kl_components(q_mean, q_var), expected, atol=1e-4, rtol=1e-4
    )
    z = torch.randn(2, 5, 4)  # with a leading Monte Carlo dimension
    expected = torch.stack([p.log_prob(z) for p in components], -1)
    torch.testing.assert_close(module.prior.log_prob_components(z), expected, atol=1e-4, rtol=1e-4)


def test_full_covariance_starts_as_the_diagonal_prior_and_set_prior_keeps_a_covariance():
    torch.manual_seed(0)
    diag = GMVAEModule(6, n_components=3, n_latent=4)
    full = GMVAEModule(6, n_components=3, n_latent=4, covariance="full")
    full.load_state_dict({**diag.state_dict(), "prior.tril": full.prior.tril.detach()})
    q_mean, q_var = torch.randn(5, 4), torch.rand(5, 4) + 0.1
    torch.testing.assert_close(
        full.prior.kl_components(q_mean, q_var), diag.prior.kl_components(q_mean, q_var)
    )
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 4))
    covariances = a @ a.transpose(0, 2, 1) + np.eye(4)
    full.prior.set(np.ones(3), rng.normal(size=(3, 4)), covariances)
    tril = full.prior.scale_tril().detach().double().numpy()
    np.testing.assert_allclose(tril @ tril.transpose(0, 2, 1), covariances, rtol=1e-5, atol=1e-5)
    diag.prior.set(np.ones(3), rng.normal(size=(3, 4)), covariances)  # keeps the diagonals
    np.testing.assert_allclose(
        torch.exp(diag.prior.log_var).detach().numpy(),
        np.diagonal(covariances, axis1=1, axis2=2),
        rtol=1e-5,
    )


def test_full_covariance_gmvae_clusters_generates_and_round_trips(tmp_path):
    mixvi.settings.seed = 0
    adata, labels = _blobs()
    mixvi.model.GMVAE.setup_anndata(adata)
    with pytest.raises(ValueError, match="covariance must be 'diag' or 'full'"):
        mixvi.model.GMVAE(adata, n_components=5, prior_covariance="spherical")
    model = mixvi.model.GMVAE(
        adata, n_components=5, n_latent=5, n_hidden=64, prior_covariance="full"
    )
    model.train(max_epochs=70, pretrain_epochs=30, **QUIET)
    predicted = model.get_cluster_assignments()
    assert adjusted_rand_score(labels, predicted) >= 0.9
    # the start copied the clusters' full covariances: off-diagonal terms are in use
    assert torch.tril(model.module.prior.tril, diagonal=-1).abs().max() > 1e-3
    x = model.generate(50, component=int(predicted[0]), seed=0)
    assert (
        model.get_cluster_assignments(ad.AnnData(x.astype(np.float32))) == predicted[0]
    ).mean() > 0.8
    model.save(tmp_path / "full", save_anndata=False)
    loaded = mixvi.model.GMVAE.load(tmp_path / "full", adata=adata)
    assert loaded.module.covariance == "full"
    np.testing.assert_allclose(
        loaded.get_cluster_probabilities(), model.get_cluster_probabilities()
    )


def test_conditional_gmvae_maps_a_query_with_a_new_condition_onto_its_clusters():
    # scArches: the reference learns types under conditions 0 and 1; the query comes from
    # condition 2, which the reference never saw, and keeps the reference's clusters
    adata = mixvi.data.simulate_counts(
        n_cells=900, n_genes=100, n_types=3, n_conditions=3, marker_lfc=2.0, seed=0
    )
    conditions = adata.obs["condition"].cat.categories
    reference = adata[adata.obs["condition"] != conditions[2]].copy()
    query = adata[adata.obs["condition"] == conditions[2]].copy()
    mixvi.model.GMVAE.setup_anndata(reference, layer="counts", condition_key="condition")
    model = mixvi.model.GMVAE(reference, n_components=3, likelihood="nb")
    model.train(max_epochs=60, **QUIET)
    types = reference.obs["cell_type"].to_numpy()
    ref_clusters = model.get_cluster_assignments()
    assert clustering_scores(types, ref_clusters)["ari"] > 0.9
    # each type's cluster in the reference
    type_cluster = pd.crosstab(types, ref_clusters).idxmax(axis=1)
    means = model.module.prior.means.detach().clone()

    query_model = mixvi.model.GMVAE.load_query_data(query, model)
    first = query_model.module.encoder.body.fc.fc_layers[0][0]
    frozen = first.weight.detach().clone()
    query_model.train(max_epochs=20, **QUIET)
    # the reference's gene weights do not move (weight decay moved them before, with the
    # GMVAE's Adam eps, and every query cell fell into one cluster); the new column learns
    n_genes = adata.n_vars
    torch.testing.assert_close(first.weight.detach()[:, :n_genes], frozen[:, :n_genes])
    assert not torch.equal(first.weight.detach()[:, -1], frozen[:, -1])
    assert query_model.conditions[-1] == conditions[2]
    # the prior, and so the clusters' places, stay the reference's
    torch.testing.assert_close(query_model.module.prior.means.detach(), means)
    query_clusters = query_model.get_cluster_assignments()
    query_types = query.obs["cell_type"].to_numpy()
    assert clustering_scores(query_types, query_clusters)["ari"] > 0.9
    # and a query cell of a type lands in the cluster the reference gave that type
    agree = np.mean(query_clusters == type_cluster.loc[query_types].to_numpy())
    assert agree > 0.9, agree
