"""The code follows cookiecutter-scverse's ruff rules (pyproject.toml), tutorials' scripts included."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (it comes with mixvi[test])")
@pytest.mark.parametrize(
    "command",
    [
        ["check", "src", "tests", "benchmarks", "tutorials"],
        ["format", "--check", "src", "tests", "benchmarks"],
    ],
    ids=["check", "format"],
)
def test_ruff_finds_nothing(command):
    run = subprocess.run([RUFF, *command], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
