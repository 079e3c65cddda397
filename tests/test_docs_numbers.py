"""Every figure the hand-written docs quote must come from a committed results file.

The tables in ``benchmarks/results/*.md`` are written by the benchmark scripts together with
their JSON. The pages people read first are written by hand: README's tables, the docs'
tables, and every figure on the two benchmark pages (``benchmarks.md``, ``what_we_tried.md``).
A decimal number there that no ``benchmarks/results/*.json`` holds, at the precision shown,
is a figure without a result behind it.
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# decimals only: integers in the docs are sizes, epochs and versions, not measurements
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
# pages whose every line is about results, prose included
BENCHMARK_PAGES = ("docs/benchmarks.md", "docs/what_we_tried.md")
# the changelog's numbers are versions and dates
HAND_WRITTEN = (
    "README.md",
    "benchmarks/README.md",
    *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md"))),
)


def _measured(obj, out: set[str]) -> set[str]:
    """Every number in ``obj`` written at 0 to 4 decimals, as a table would show it."""
    if isinstance(obj, bool):
        return out
    if isinstance(obj, int | float):
        out.update(f"{abs(obj):.{d}f}" for d in range(5))
    elif isinstance(obj, dict):
        for value in obj.values():
            _measured(value, out)
    elif isinstance(obj, list):
        for value in obj:
            _measured(value, out)
    return out


def quoted_figures(text: str, whole_page: bool) -> list[tuple[int, str]]:
    """(line, figure) for the decimal numbers of a page's table rows (every line if whole_page)."""
    return [
        (number, figure)
        for number, line in enumerate(text.splitlines(), 1)
        if whole_page or line.lstrip().startswith("|")
        for figure in DECIMAL.findall(line)
    ]


def unbacked(pages: dict[str, str], measured: set[str]) -> list[str]:
    """``page:line: figure`` for each quoted figure that no results file holds."""
    return [
        f"{name}:{line}: {figure}"
        for name, text in pages.items()
        for line, figure in quoted_figures(text, name in BENCHMARK_PAGES)
        if figure not in measured
    ]


def test_every_figure_in_the_docs_is_in_a_committed_results_file():
    measured: set[str] = set()
    for path in sorted(RESULTS.glob("*.json")):
        _measured(json.loads(path.read_text()), measured)
    pages = {
        name: (ROOT / name).read_text() for name in HAND_WRITTEN if name != "docs/changelog.md"
    }
    assert len(measured) > 1_000  # the results files were read
    assert not unbacked(pages, measured)


def test_a_figure_without_a_result_is_found():
    measured = _measured({"gmvae": {"ari": [0.5873, 0.0412]}}, set())
    pages = {
        "docs/user_guide.md": "| GMVAE | 0.587 ± 0.041 |\n| PCA | 0.878 |\nprose 0.431\n",
        "docs/benchmarks.md": "the GMVAE reaches ARI 0.59, PCA + Leiden 0.88\n",
    }
    # table rows everywhere, prose only on the benchmark pages
    assert unbacked(pages, measured) == [
        "docs/user_guide.md:2: 0.878",
        "docs/benchmarks.md:1: 0.88",
    ]
