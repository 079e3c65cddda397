"""Check the built API pages: python docs/check_api_pages.py docs/_build/html

A page fails when it shows a raw directive (``.. autoclass::``, as when autosummary's stubs
are read as Markdown), has no rendered signature, or lacks a Parameters section although
its class or function takes parameters. ``sphinx -W`` catches none of these.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

RAW = re.compile(r"\.\.\s+(auto\w+|currentmodule|autosummary)::")


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _takes_parameters(obj) -> bool:
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return False
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return any(p not in ("self", "cls", "args", "kwargs") for p in params)


def check(html_dir: Path) -> list[str]:
    """Problems found in the built API pages under ``html_dir``; empty when there are none."""
    pages = sorted((html_dir / "generated").glob("*.html"))
    if not pages:
        return [f"no API pages under {html_dir / 'generated'}"]
    problems = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        if RAW.search(text):
            problems.append(f"{page.name}: shows a raw directive ({RAW.search(text).group(0)})")
        obj = _resolve(page.stem)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if 'class="sig sig-object py"' not in text:
            problems.append(f"{page.name}: no rendered signature")
        if _takes_parameters(obj) and ">Parameters<" not in text:
            problems.append(f"{page.name}: no Parameters section")
    return problems


if __name__ == "__main__":
    problems = check(Path(sys.argv[1]))
    for problem in problems:
        print(f"API page check: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("API page check: every generated page renders its signature and parameters")
