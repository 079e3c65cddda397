"""train() shows its progress bar and mixvi's own lines; Lightning's chatter only at DEBUG."""

import logging
import subprocess
import sys
import textwrap

import pytest

import mixvi

#: what Lightning prints on a plain train() unless mixvi hides it
LIGHTNING_LINES = (
    "GPU available",
    "TPU available",
    "litlogger",
    "LeafSpec",
    "`Trainer.fit` stopped",
    "Seed set to",
    "smaller than the logging interval",
)

SCRIPT = """
import logging, sys
import scanpy as sc
import mixvi
if sys.argv[1] == "debug":
    mixvi.settings.verbosity = logging.DEBUG
mixvi.settings.seed = 0
adata = sc.datasets.pbmc68k_reduced()
mixvi.model.{model}.setup_anndata(adata)
model = mixvi.model.{model}(adata, n_hidden=16{extra})
model.train(max_epochs=2{train_extra})
print("trained")
"""


def _train_in_a_fresh_python(
    verbosity: str, model: str = "VAE", extra: str = "", train_extra: str = ""
) -> str:
    code = textwrap.dedent(SCRIPT.format(model=model, extra=extra, train_extra=train_extra))
    # a plain Python session, as a user's: no pytest capture or warning filters in between
    run = subprocess.run(
        [sys.executable, "-c", code, verbosity], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout + run.stderr


@pytest.mark.parametrize(
    ("model", "extra", "train_extra", "bars"),
    [
        ("VAE", "", "", ["Epoch 2/2"]),
        # one bar per phase, named after it
        (
            "GMVAE",
            ", n_components=3",
            ", pretrain_epochs=1",
            ["GMVAE pretraining: epoch 1/1", "GMVAE free: epoch 1/1"],
        ),
    ],
)
def test_train_prints_its_progress_bar_and_no_lightning_lines(model, extra, train_extra, bars):
    output = _train_in_a_fresh_python("default", model, extra, train_extra)
    assert "trained" in output
    for bar in bars:
        assert bar in output, output[-3000:]
    shown = [line for line in LIGHTNING_LINES if line in output]
    assert not shown, output[-3000:]
    assert "Warning" not in output, output[-3000:]


def test_debug_verbosity_brings_lightning_lines_back():
    output = _train_in_a_fresh_python("debug")
    assert "GPU available" in output and "`Trainer.fit` stopped" in output


def test_the_loader_fallback_is_still_reported(counts_adata, tmp_path, caplog):
    import anndata as ad

    path = tmp_path / "counts.h5ad"
    counts_adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    mixvi.model.VAE.setup_anndata(backed)
    model = mixvi.model.VAE(backed, likelihood="nb", n_hidden=8)
    log = logging.getLogger("mixvi")
    log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="mixvi"):
            assert model._resolve_loader("auto", "cpu", "auto", {}) == "anndata"
    finally:
        log.removeHandler(caplog.handler)
    assert "stream from the AnnData" in caplog.text and "backed" in caplog.text
