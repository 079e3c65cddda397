"""Bad input is refused before training, with the AnnData left unchanged."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import adata_keys

import mixvi


def _snapshot(adata):
    return adata_keys(adata)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("sparse", [False, True])
def test_nan_or_inf_in_x_is_refused(pbmc, bad, sparse):
    pbmc.X[3, 5] = bad
    if sparse:
        pbmc.X = sp.csr_matrix(pbmc.X)
    before = _snapshot(pbmc)
    with pytest.raises(ValueError, match="NaN or infinite"):
        mixvi.model.VAE.setup_anndata(pbmc)
    assert _snapshot(pbmc) == before
    assert "_scvi_uuid" not in pbmc.uns


def test_nan_in_layer_is_refused(counts_adata):
    counts_adata.layers["counts"][0, 0] = np.nan
    before = _snapshot(counts_adata)
    with pytest.raises(ValueError, match=r"adata.layers\['counts'\] contains 1 NaN"):
        mixvi.model.CVAE.setup_anndata(counts_adata, condition_key="condition", layer="counts")
    assert _snapshot(counts_adata) == before


def test_missing_layer_is_named(counts_adata):
    with pytest.raises(KeyError, match="raw_counts"):
        mixvi.model.VAE.setup_anndata(counts_adata, layer="raw_counts")


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson"])
def test_negative_values_refused_for_counts(pbmc, likelihood):
    mixvi.model.VAE.setup_anndata(pbmc)
    with pytest.raises(ValueError, match="non-negative"):
        mixvi.model.VAE(pbmc, likelihood=likelihood)


def test_non_integer_values_refused_for_counts(counts_adata):
    counts_adata.X[0, 0] = 1.5
    mixvi.model.VAE.setup_anndata(counts_adata)
    with pytest.raises(ValueError, match="1 non-integer"):
        mixvi.model.VAE(counts_adata, likelihood="nb")


def test_values_outside_unit_interval_refused_for_bernoulli(pbmc):
    mixvi.model.VAE.setup_anndata(pbmc)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mixvi.model.VAE(pbmc, likelihood="bernoulli")


def test_missing_condition_column_is_named(counts_adata):
    before = _snapshot(counts_adata)
    with pytest.raises(KeyError, match="'treatment' not found in adata.obs"):
        mixvi.model.CVAE.setup_anndata(counts_adata, condition_key="treatment")
    assert _snapshot(counts_adata) == before


def test_missing_covariate_column_is_named(counts_adata):
    with pytest.raises(KeyError, match="'donor'"):
        mixvi.model.CVAE.setup_anndata(
            counts_adata, condition_key="condition", categorical_covariate_keys=["donor"]
        )


def test_empty_anndata_is_refused(pbmc):
    with pytest.raises(ValueError, match="at least one observation"):
        mixvi.model.VAE.setup_anndata(pbmc[:0].copy())


def test_infer_likelihood(pbmc, counts_adata):
    from mixvi.model import infer_likelihood

    assert infer_likelihood(pbmc) == "normal"
    assert infer_likelihood(counts_adata) == "nb"
    pbmc.X = np.clip(pbmc.X, 0, 1)
    assert infer_likelihood(pbmc) == "bernoulli"
