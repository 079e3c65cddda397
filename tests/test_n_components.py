"""Choosing K without labels: the BIC of the aggregate posterior recovers the number of types."""

import numpy as np
import pytest
from conftest import QUIET

import mixvi
from mixvi.model._n_components import aggregate_posterior_bic

PROPORTIONS = {
    3: [50, 30, 20],
    5: [35, 25, 20, 12, 8],
    8: [22, 18, 15, 12, 10, 10, 8, 5],
}


def _chosen(table) -> int:
    assert table["chosen"].sum() == 1
    return int(table.index[table["chosen"]][0])


@pytest.mark.slow
@pytest.mark.parametrize("true_k", [3, 5, 8])
def test_the_chosen_k_is_the_number_of_simulated_cell_types(true_k):
    adata = mixvi.data.simulate_counts(
        n_cells=1_500, n_types=true_k, n_conditions=1, proportions=PROPORTIONS[true_k], seed=0
    )
    mixvi.model.GMVAE.setup_anndata(adata, layer="counts")
    table = mixvi.model.GMVAE.compare_n_components(
        adata,
        range(2, 12),
        model_kwargs={"likelihood": "nb"},
        train_kwargs=QUIET,
        fit_models=False,
        selection_epochs=60,
    )
    assert list(table.index) == list(range(2, 12))
    assert _chosen(table) == true_k, table["bic"].round(3).to_dict()


def test_bic_on_means_alone_would_split_but_on_draws_it_does_not():
    # two well separated clusters, each spread more by posterior noise than by its means
    rng = np.random.default_rng(0)
    centre = np.repeat([[-4.0, 0.0], [4.0, 0.0]], 300, axis=0)
    # uniform, not Gaussian: the means alone need more components
    mean = centre + rng.uniform(-1, 1, centre.shape)
    var = np.full_like(mean, 1.0)
    table = aggregate_posterior_bic(mean, var, [1, 2, 3, 4, 6], seed=0)
    assert _chosen(table) == 2
    means_only = aggregate_posterior_bic(
        mean, np.zeros_like(var), [1, 2, 3, 4, 6], n_draws=1, seed=0
    )
    assert _chosen(means_only) > 2


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        ([], "is empty"),
        ([0, 3], "must be >= 1"),
        ([2, 10_000], "exceed the number of cells"),
        ([2, 3, 3], "more than once"),
        (5, "must be a list"),
    ],
)
def test_bad_candidates_are_refused_before_any_training(pbmc, candidates, message, monkeypatch):
    mixvi.model.GMVAE.setup_anndata(pbmc)

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the candidates were checked")

    monkeypatch.setattr(mixvi.model.GMVAE, "_pretrain", no_training)
    monkeypatch.setattr(mixvi.model.GMVAE, "train", no_training)
    with pytest.raises(ValueError, match=message):
        mixvi.model.GMVAE.compare_n_components(pbmc, candidates, fit_models=False)
