import os
import sys

# Under pytest-xdist every worker gets its share of the cores. Left alone, torch, BLAS and
# numba each start one thread per core in every worker, and two workers on two cores then run
# slower together than one alone.
#
# The variables below reach only the libraries that load after this file, and pytest's plugins
# (fast-array-utils, hypothesis) load numpy, numba and torch first. So each runtime is also set
# by call once imported. numba gets its own thread pool (workqueue): its OpenMP layer shares
# PyPI's CUDA torch's libgomp and sets that pool to every core when it starts, after which
# scikit-learn's threadpoolctl contexts (KMeans, kneighbors) read and "restore" every core on
# exit; each worker then spun two OpenMP threads on two cores and the latest-stack suite ran
# about ten times slower. numba's pool size is fixed once numba is imported (a different
# NUMBA_NUM_THREADS later is refused), so it is capped with numba.set_num_threads instead.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _THREADS = max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, str(_THREADS))
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(_THREADS))
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
else:
    _THREADS = None

import anndata as ad
import numba
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import threadpoolctl
import torch
from lightning.pytorch.callbacks import Callback

import mixvi

if _THREADS is not None:
    numba.config.reload_config()  # numba may have read its settings before the lines above
    numba.set_num_threads(min(_THREADS, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(_THREADS)
    threadpoolctl.threadpool_limits(_THREADS)  # every loaded OpenMP and BLAS runtime

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def _fetch_fashion_mnist():
    """The real Fashion-MNIST, as this machine allows: on disk, a download, or Debian's package."""
    try:
        return mixvi.data.fetch_files(mixvi.data.FASHION_MNIST)
    except FileNotFoundError as err:
        return err


def pytest_report_header(config):
    from importlib.metadata import version

    stack = ", ".join(
        f"{name} {version(name)}"
        for name in ("scvi-tools", "anndata", "pandas", "scanpy", "numpy", "scipy", "torch")
    )
    # fetched once, before any test, so that the header says where the images came from
    fetched = _fetch_fashion_mnist()
    config._mixvi_fashion_mnist = fetched
    if isinstance(fetched, Exception):
        data = f"mixvi data: Fashion-MNIST could not be had: {fetched}"
    else:
        data = (
            f"mixvi data: {fetched.describe(mixvi.data.FASHION_MNIST)} (source: {fetched.source})"
        )
    return [f"mixvi stack: {stack}", data]


@pytest.fixture(scope="session")
def fashion_mnist_source(pytestconfig):
    """Where the real Fashion-MNIST came from; fails (never skips) when it could not be had."""
    fetched = getattr(pytestconfig, "_mixvi_fashion_mnist", None) or _fetch_fashion_mnist()
    if isinstance(fetched, Exception):
        pytest.fail(str(fetched))
    return fetched


def adata_keys(adata) -> tuple:
    """The AnnData's obs columns and uns/obsm/layers keys, to check that a call left them alone.

    anndata 0.13 lists ``None`` (for ``.X``) among the layers' keys, hence the string sort key.
    """
    return (
        list(adata.obs.columns),
        sorted(adata.uns.keys()),
        sorted(adata.obsm.keys()),
        sorted(adata.layers.keys(), key=str),
    )


def poison_decoder(module) -> None:
    """Fill the decoder's first weight with NaN."""
    with torch.no_grad():
        next(module.decoder.parameters()).fill_(float("nan"))


class PoisonDecoder(Callback):
    """:func:`poison_decoder` at the start of ``epoch`` (0-based) or of global ``step``."""

    def __init__(self, epoch: int | None = None, step: int | None = None) -> None:
        self.epoch, self.step = epoch, step

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            poison_decoder(pl_module.module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            poison_decoder(pl_module.module)


def assert_finite_weights(module) -> None:
    assert all(
        torch.isfinite(v).all() for v in module.state_dict().values() if v.is_floating_point()
    )


def assert_compiled_matches_eager(eager, compiled) -> None:
    """The ELBO histories of an uncompiled and a compiled run of the same seed agree.

    The compiled kernels draw their own random numbers (dropout, z), so the runs agree up to
    Monte Carlo noise (measured on the CPU: 0.15 %), well inside what training changes (5 %).
    """
    elbo_eager = eager.history["elbo_train"].to_numpy(dtype=float).ravel()
    elbo_compiled = compiled.history["elbo_train"].to_numpy(dtype=float).ravel()
    assert elbo_eager[0] - elbo_eager[-1] > 0.03 * elbo_eager[0]
    np.testing.assert_allclose(elbo_compiled, elbo_eager, rtol=0.005)
    assert not any(k.startswith("_orig_mod.") for k in compiled.module.state_dict())


@pytest.fixture(autouse=True)
def _seed():
    mixvi.settings.seed = 0


@pytest.fixture(scope="session")
def _pbmc():
    return sc.datasets.pbmc68k_reduced()


@pytest.fixture
def pbmc(_pbmc):
    return _pbmc.copy()


@pytest.fixture
def counts_adata():
    """Poisson-ish counts with two conditions; condition B shifts the first 10 genes up."""
    rng = np.random.default_rng(0)
    n, g = 300, 40
    condition = np.repeat(["A", "B"], n // 2)
    rate = rng.gamma(2.0, 2.0, size=(n, g))
    rate[condition == "B", :10] *= 4
    x = rng.poisson(rate).astype(np.float32)
    adata = ad.AnnData(
        x, obs=pd.DataFrame({"condition": condition}, index=[f"c{i}" for i in range(n)])
    )
    adata.var_names = [f"g{i}" for i in range(g)]
    adata.layers["counts"] = adata.X.copy()
    return adata
