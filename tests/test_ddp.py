"""Multi-process training with Lightning's DDP on the CPU (gloo backend)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("ddp_train_script.py")


def _run(mode, batch_size, out: Path) -> list[dict]:
    """Train in a subprocess; one record per rank that ran, in rank order."""
    env = {**os.environ, "PL_TORCH_DISTRIBUTED_BACKEND": "gloo", "MPLBACKEND": "Agg"}
    subprocess.run(
        [sys.executable, str(SCRIPT), mode, "20", str(batch_size), str(out)],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    records = [json.loads(p.read_text()) for p in sorted(out.parent.glob(f"{out.name}.rank*.json"))]
    return sorted(records, key=lambda r: r["rank"])


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_single_process_training(tmp_path):
    # two ranks with 64 cells each per step take the steps of one process with 128
    ranks = _run("ddp", 64, tmp_path / "ddp")
    (single,) = _run("single", 128, tmp_path / "single")
    # two processes ran, each knowing itself as one of two ranks
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 for r in ranks)
    assert ranks[0]["pid"] != ranks[1]["pid"]
    assert single["world_size"] == 1 and single["rank"] == 0
    # each rank trained on its own shard: disjoint halves that together are every cell
    assert ranks[0]["unique_rows"] == ranks[0]["n_cells"]  # rows name cells
    first, second = (set(r["cells"]) for r in ranks)
    assert not first & second
    # the distributed sampler pads the shorter shard with repeated cells (700 is even: none)
    assert first | second == set(range(ranks[0]["n_cells"]))
    assert abs(len(first) - len(second)) <= 1
    assert set(single["cells"]) == set(range(single["n_cells"]))
    # gradients were averaged: both ranks end with the same weights, bit for bit
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["weights"] != single["weights"]  # a different run, so a real comparison
    assert ranks[0]["loader"] == "anndata"  # the in-memory path is single-process only
    ddp_elbo = ranks[0]["elbo"]
    assert abs(ddp_elbo - single["elbo"]) < 0.03 * abs(single["elbo"]), (ranks, single)
