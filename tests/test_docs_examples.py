"""The Python examples of the README and the docs run as pasted, page by page, in a fresh Python.

Every block fenced as ```python runs, in order, in one new interpreter per page, as a user
pasting them into a fresh kernel would. Blocks that must not run here (a DDP script that
relaunches itself) are written as ```{code-block} python, which the docs render the same.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = ["README.md", "docs/index.md", "docs/quickstart.md", "docs/user_guide.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

RUNNER = """
import json, sys, traceback
page, blocks = sys.argv[1], json.load(open(sys.argv[2]))
scope = {"__name__": "__main__"}
for number, code in enumerate(blocks, 1):
    try:
        exec(compile(code, f"{page}, block {number}", "exec"), scope)
    except Exception:
        traceback.print_exc()
        sys.exit(f"{page}: block {number} of {len(blocks)} failed")
print(f"{page}: {len(blocks)} blocks ran")
"""


def python_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def test_blocks_are_found_and_other_fences_are_left_out():
    text = "a\n```python\nx = 1\n```\n```bash\nmake\n```\n```{code-block} python\nskip()\n```\n"
    assert python_blocks(text) == ["x = 1\n"]


@pytest.mark.parametrize("page", PAGES)
def test_the_page_examples_run_as_pasted(page, tmp_path):
    blocks = python_blocks((ROOT / page).read_text())
    assert blocks, f"{page} has no Python examples"
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    env = {**os.environ, "MPLBACKEND": "Agg"}
    run = subprocess.run(
        [sys.executable, "-c", RUNNER, page, str(tmp_path / "blocks.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert f"{len(blocks)} blocks ran" in run.stdout
