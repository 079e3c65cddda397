"""Messy input: each case gives a clear error or a correct result, and failures leave the AnnData as it was."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import QUIET, adata_keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mixvi


def _state(adata):
    return (*adata_keys(adata), adata.X.copy())


def _unchanged(before, adata):
    after = _state(adata)
    assert before[:4] == after[:4]
    a, b = before[4], after[4]
    a = a.toarray() if sp.issparse(a) else a
    b = b.toarray() if sp.issparse(b) else b
    np.testing.assert_array_equal(a, b)


def test_zero_features_are_refused(pbmc):
    empty = pbmc[:, :0].copy()
    before = _state(empty)
    with pytest.raises(ValueError, match="feature"):
        mixvi.model.VAE.setup_anndata(empty)
    _unchanged(before, empty)


def test_a_single_cell_gives_a_clear_error_when_training(pbmc):
    one = pbmc[:1].copy()
    mixvi.model.VAE.setup_anndata(one)
    model = mixvi.model.VAE(one)
    with pytest.raises(ValueError, match="at least 2 observations"):
        model.train(max_epochs=1, **QUIET)


def test_constant_features_train_to_a_finite_model(pbmc):
    data = pbmc.copy()
    data.X[:, :5] = 1.5  # constant columns: the learned scale must not collapse to 0
    mixvi.model.VAE.setup_anndata(data)
    model = mixvi.model.VAE(data)
    model.train(max_epochs=20, **QUIET)
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()
    assert np.isfinite(model.get_latent_representation()).all()


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson"])
def test_all_zero_cells_train_without_nan(counts_adata, likelihood):
    data = counts_adata.copy()
    data.layers["counts"][:20] = 0  # library size 0
    mixvi.model.VAE.setup_anndata(data, layer="counts")
    model = mixvi.model.VAE(data, likelihood=likelihood, n_hidden=32)
    model.train(max_epochs=3, **QUIET)
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()
    assert np.isfinite(model.get_latent_representation()[:20]).all()
    assert np.isfinite(model.reconstruct(indices=np.arange(20))).all()


@pytest.mark.parametrize(
    "convert",
    [sp.csr_matrix, sp.csc_matrix, lambda x: x.astype(np.float64), lambda x: x.astype(np.int64)],
    ids=["csr", "csc", "float64", "int64"],
)
def test_storage_formats_and_dtypes_give_the_same_model(counts_adata, convert):
    results = []
    for fmt in (lambda x: x, convert):
        data = counts_adata.copy()
        data.X = fmt(np.asarray(counts_adata.layers["counts"]))
        mixvi.settings.seed = 0
        mixvi.model.VAE.setup_anndata(data)
        model = mixvi.model.VAE(data, likelihood="nb", n_hidden=16)
        model.train(max_epochs=2, **QUIET)
        results.append(model.get_latent_representation())
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)


def test_an_unseen_condition_at_inference_is_named(counts_adata):
    mixvi.model.CVAE.setup_anndata(counts_adata, condition_key="condition")
    model = mixvi.model.CVAE(counts_adata, n_hidden=16)
    model.train(max_epochs=1, **QUIET)
    query = counts_adata[:10].copy()
    query.obs["condition"] = pd.Categorical(["C"] * 10)
    before = _state(query)
    with pytest.raises(ValueError, match="C"):
        model.get_latent_representation(query)
    assert list(query.obs.columns)[: len(before[0])] == before[0]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    matrix=arrays(
        np.float32,
        st.tuples(st.integers(0, 6), st.integers(0, 5)),
        elements=st.one_of(
            st.floats(-1e6, 1e6, width=32), st.sampled_from([np.nan, np.inf, 0.0, 1.0])
        ),
    ),
    sparse=st.booleans(),
)
def test_setup_anndata_on_random_matrices(matrix, sparse):
    adata = ad.AnnData(sp.csr_matrix(matrix) if sparse else matrix.copy())
    before = _state(adata)
    bad = matrix.size == 0 or not np.isfinite(matrix).all()
    if bad:
        with pytest.raises(ValueError):
            mixvi.model.VAE.setup_anndata(adata)
        _unchanged(before, adata)
    else:
        mixvi.model.VAE.setup_anndata(adata)
        model = mixvi.model.VAE(adata)
        assert model.summary_stats.n_vars == matrix.shape[1]
        expected = "bernoulli" if ((matrix >= 0) & (matrix <= 1)).all() else None
        if expected:
            assert mixvi.model.infer_likelihood(adata) in ("bernoulli", "nb")
