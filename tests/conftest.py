import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from lightning.pytorch.callbacks import Callback

import mixvi

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


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
    assert all(torch.isfinite(v).all() for v in module.state_dict().values() if v.is_floating_point())


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
    adata = ad.AnnData(x, obs=pd.DataFrame({"condition": condition}, index=[f"c{i}" for i in range(n)]))
    adata.var_names = [f"g{i}" for i in range(g)]
    adata.layers["counts"] = adata.X.copy()
    return adata
