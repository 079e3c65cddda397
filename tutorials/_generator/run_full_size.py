"""Executes tutorials at full size and stores their outputs and run time: python tutorials/_generator/run_full_size.py 01_images_clustering ..."""
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

os.environ["MIXVI_TUTORIAL_SMALL"] = "0"
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
times = {}
for name in sys.argv[1:]:
    p = Path(__file__).resolve().parents[1] / f"{name}.ipynb"
    nb = nbformat.read(p, as_version=4)
    t = time.perf_counter()
    NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(Path(__file__).resolve().parents[1])}}).execute()
    times[name] = time.perf_counter() - t
    nb.metadata["mixvi"] = {"full_run_seconds": round(times[name], 1), "machine": "2 CPU cores, no GPU"}
    nbformat.write(nb, p)
    print(name, round(times[name], 1), flush=True)
print(json.dumps(times))
