"""Every tutorial notebook runs top to bottom in its small mode (MIXVI_TUTORIAL_SMALL=1)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.ipynb"))


def test_there_are_tutorials():
    assert [p.stem[:2] for p in TUTORIALS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_in_small_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXVI_TUTORIAL_SMALL", "1")
    # inline figures (CI exports MPLBACKEND=Agg, which would hide them from the notebook)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    book = nbformat.read(path, as_version=4)
    first_code = next(c for c in book.cells if c.cell_type == "code")
    assert "import mixvi" in first_code.source and "mixvi.settings.seed" in first_code.source
    NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o
        for c in book.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert errors == []
    assert any(
        o.output_type == "display_data" and "image/png" in o.get("data", {})
        for c in book.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    ), "no figure shown"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_and_its_percent_script_agree(path):
    # each notebook is edited as its jupytext twin (tutorials/NAME.py); the pair must not drift
    import jupytext

    twin = path.with_suffix(".py")
    assert twin.is_file(), f"{path.name} has no jupytext twin {twin.name}"
    assert jupytext.read(path).metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"

    def cells(book):
        return [(c.cell_type, c.source.strip()) for c in book.cells]

    assert cells(jupytext.read(path)) == cells(jupytext.read(twin))


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_committed_tutorial_shows_its_full_size_run(path):
    # the docs render the stored outputs; a notebook regenerated without re-running them
    # (tutorials/_generator/run_full_size.py) would publish an empty tutorial
    book = nbformat.read(path, as_version=4)
    assert book.metadata.get("mixvi", {}).get("full_run_seconds", 0) > 0
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "some cells were not run"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1
