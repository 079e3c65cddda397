"""The conditional GMVAE clusters by cell type, not by condition (simulated counts)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

import mixvi
from mixvi.model._defaults import pretraining_mode

UNEQUAL = [35, 25, 20, 12, 8]
# every condition multiplies every gene by its own log-normal factor (sd 1 on the log scale)
CASES = {
    "4 equal types, 2 conditions": {"n_types": 4, "n_conditions": 2},
    "4 equal types, 3 conditions": {"n_types": 4, "n_conditions": 3},
    "5 unequal types, 2 conditions": {"n_types": 5, "n_conditions": 2, "proportions": UNEQUAL},
    "5 unequal types, 3 conditions": {"n_types": 5, "n_conditions": 3, "proportions": UNEQUAL},
}


def _conditional_gmvae(adata, n_components, seed, max_epochs=180, **train):
    mixvi.settings.seed = seed
    mixvi.model.GMVAE.setup_anndata(adata, layer="counts", condition_key="condition")
    model = mixvi.model.GMVAE(adata, n_components=n_components, likelihood="nb")
    # 60 pretraining epochs (a third), then 120 of the mixture
    model.train(
        max_epochs=max_epochs, enable_progress_bar=False, enable_model_summary=False, **train
    )
    return model


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_clusters_follow_the_cell_type_and_hold_no_condition(case):
    settings = CASES[case]
    by_type, by_condition = [], []
    for seed in range(3):
        adata = mixvi.data.simulate_counts(n_cells=1_200, n_genes=300, seed=seed, **settings)
        model = _conditional_gmvae(adata, settings["n_types"], seed)
        clusters = model.get_cluster_assignments()
        by_type.append(adjusted_rand_score(adata.obs["cell_type"], clusters))
        by_condition.append(adjusted_rand_score(adata.obs["condition"], clusters))
    assert np.mean(by_type) >= 0.9, by_type
    assert np.mean(by_condition) <= 0.05, by_condition


def test_a_conditional_gmvae_pretrains_as_a_vae_and_an_unconditional_one_as_an_ae(counts_adata):
    # the unconditional GMVAE keeps the autoencoder pretraining and the UMAP start it had
    adata = mixvi.data.simulate_counts(n_cells=200, n_genes=40, n_types=2, seed=0)
    mixvi.model.GMVAE.setup_anndata(adata, layer="counts")
    plain = mixvi.model.GMVAE(adata, n_components=2, likelihood="nb", n_hidden=16)
    assert pretraining_mode(plain.adata_manager, "auto") == "ae"
    conditional = _conditional_gmvae(adata.copy(), 2, 0, 4, pretrain_epochs=2, anchor_epochs=0)
    assert conditional.pretraining_ == "vae"
    # the VAE pretraining's KL was part of its loss (an AE's would be zero)
    assert (conditional.pretrain_history_["kl_local_train"].to_numpy(dtype=float) > 0).all()
    with pytest.raises(ValueError, match="pretraining must be"):
        conditional.train(max_epochs=1, pretraining="pca")


def test_the_start_matches_the_aggregate_posterior_after_a_vae_pretraining():
    from mixvi.model import mixture_start

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(-3, 0.1, (100, 2)), rng.normal(3, 0.1, (100, 2))])
    z_var = np.full_like(z, 0.5)
    plain = mixture_start(z, 2, "gmm", 1, 15, 0)
    matched = mixture_start(z, 2, "gmm", 1, 15, 0, z_var=z_var)
    assert plain.variances.max() < 0.05
    np.testing.assert_allclose(matched.variances, plain.variances + 0.5, atol=1e-6)


def test_a_condition_with_missing_values_is_refused_before_training(counts_adata):
    counts_adata.obs["condition"] = counts_adata.obs["condition"].astype(object)
    counts_adata.obs.iloc[[3, 7, 11], counts_adata.obs.columns.get_loc("condition")] = np.nan
    with pytest.raises(ValueError, match=r"adata.obs\['condition'\] has 3 missing value"):
        mixvi.model.GMVAE.setup_anndata(counts_adata, layer="counts", condition_key="condition")
    with pytest.raises(ValueError, match="3 missing value"):
        mixvi.model.CVAE.setup_anndata(counts_adata, layer="counts", condition_key="condition")


def test_a_condition_with_one_category_trains_with_a_warning(counts_adata):
    counts_adata.obs["condition"] = "A"
    with pytest.warns(UserWarning, match="single category .*does nothing"):
        mixvi.model.GMVAE.setup_anndata(counts_adata, layer="counts", condition_key="condition")
    model = mixvi.model.GMVAE(counts_adata, n_components=2, likelihood="nb", n_hidden=16)
    model.train(max_epochs=3, pretrain_epochs=1, enable_progress_bar=False)
    assert model.get_cluster_assignments().shape == (counts_adata.n_obs,)


def test_a_condition_smaller_than_the_number_of_components_is_named(counts_adata):
    condition = np.where(np.arange(counts_adata.n_obs) < 4, "rare", "common")
    counts_adata.obs["condition"] = pd.Categorical(condition)
    mixvi.model.GMVAE.setup_anndata(counts_adata, layer="counts", condition_key="condition")
    with pytest.warns(UserWarning, match=r"'rare' \(4 cells\).*n_components=6"):
        mixvi.model.GMVAE(counts_adata, n_components=6, likelihood="nb", n_hidden=16)
