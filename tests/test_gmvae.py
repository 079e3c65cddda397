"""The Gaussian-mixture VAE: maths, clustering without collapse, outputs, save/load."""

import anndata as ad
import numpy as np
import pytest
import torch
from conftest import QUIET
from scvi import REGISTRY_KEYS
from sklearn.metrics import adjusted_rand_score
from torch.distributions import Normal, kl_divergence

import mixvi
from mixvi.module import GMVAEModule


def test_mixture_kl_matches_its_definition():
    torch.manual_seed(0)
    module = GMVAEModule(6, n_components=3, n_latent=2)
    x = torch.randn(5, 6)
    tensors = {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: torch.zeros(5, 1, dtype=torch.long)}
    inf, _, out = module(tensors)
    qz, z = inf["qz"], inf["z"]
    log_pi = torch.log_softmax(module.prior_logits, 0)
    comps = Normal(module.prior_means, torch.exp(0.5 * module.prior_log_var))
    log_pzc = comps.log_prob(z.unsqueeze(1)).sum(-1)  # (5, 3)
    gamma = torch.softmax(log_pi + log_pzc, -1)
    kl_each = torch.stack(
        [kl_divergence(qz, Normal(module.prior_means[c], torch.exp(0.5 * module.prior_log_var[c]))).sum(-1) for c in range(3)],
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
    model.train(max_epochs=40, pretrain_epochs=30, **QUIET)
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
    np.testing.assert_allclose(loaded.get_cluster_probabilities(), model.get_cluster_probabilities())


def test_conditional_gmvae_takes_the_condition(counts_adata):
    mixvi.model.GMVAE.setup_anndata(counts_adata, layer="counts", condition_key="condition")
    model = mixvi.model.GMVAE(counts_adata, n_components=3, likelihood="nb", n_hidden=32)
    assert model.module.encoder.body.fc.fc_layers[0][0].in_features == 40 + 2
    model.train(max_epochs=2, pretrain_epochs=1, **QUIET)
    assert model.get_cluster_probabilities().shape == (300, 3)
    assert model.generate(4, component=1, condition="B").shape == (4, 40)


def test_more_components_than_cells_is_refused(pbmc):
    small = pbmc[:5].copy()
    mixvi.model.GMVAE.setup_anndata(small)
    with pytest.raises(ValueError, match="n_components=10 is larger than the number of observations"):
        mixvi.model.GMVAE(small, n_components=10)
