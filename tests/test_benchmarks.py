"""The benchmark scripts run end to end in their smoke mode (CI proves they work, not their numbers)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_quality_benchmark_smoke(tmp_path):
    quality = _load("quality")
    summary = quality.main(["--smoke", "--seeds", "0", "1", "--out", str(tmp_path)])
    assert set(summary) == {"fashion_mnist", "mnist5k", "pbmc"}
    for methods in summary.values():
        assert set(methods) == set(quality.METHODS)
        for scores in methods.values():
            assert scores["n_seeds"] == 2
            assert all(0 <= scores[k][0] <= 1 for k in ("acc", "nmi"))
            assert -1 <= scores["ari"][0] <= 1
    saved = json.loads((tmp_path / "quality_smoke.json").read_text())
    assert saved["meta"]["smoke"] is True and "--smoke" in saved["meta"]["command"]
    assert set(saved["per_seed"]["mnist5k"]) == {"0", "1"}
    assert np.isfinite(saved["per_seed"]["pbmc"]["0"]["gmvae"]["elbo"])
    table = (tmp_path / "quality_smoke.md").read_text()
    assert "| mnist5k | gmvae |" in table and "n/a (smoke)" in table
