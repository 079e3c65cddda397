"""Multi-process training with Lightning's DDP on the CPU (gloo backend)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("ddp_train_script.py")


def _run(mode, batch_size, out):
    env = {**os.environ, "PL_TORCH_DISTRIBUTED_BACKEND": "gloo", "MPLBACKEND": "Agg"}
    subprocess.run(
        [sys.executable, str(SCRIPT), mode, "20", str(batch_size), str(out)],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    return json.loads(Path(out).read_text())


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_single_process_training(tmp_path):
    # two ranks with 64 cells each per step take the steps of one process with 128
    ddp = _run("ddp", 64, tmp_path / "ddp.json")
    single = _run("single", 128, tmp_path / "single.json")
    assert ddp["loader"] == "anndata"  # the in-memory path is single-process only
    assert abs(ddp["elbo"] - single["elbo"]) < 0.03 * abs(single["elbo"]), (ddp, single)
