"""Scale: peak memory and time per epoch at 10^4, 10^5 and 10^6 cells, in memory and backed.

Synthetic negative-binomial counts (sparse CSR, 1,000 genes) are written once per size to
an ``.h5ad``. Each run then starts in a fresh process that reads the file either into
memory (``read_h5ad``; the default ``loader="auto"``) or backed (``read_h5ad(backed="r")``;
scvi-tools' AnnData loader reads each minibatch from disk), trains a mixvi VAE (NB) and
reports its own peak RSS.

Epochs are cut short: at most ``--max-steps`` minibatches are trained, and the epoch time
is the median step time (after 10 warm-up steps) times the number of minibatches in a full
epoch. The table says where fewer steps than a full epoch were trained. Writes ``results/scale.md`` and ``results/scale.json``.

Usage::

    python benchmarks/scale.py                      # 10^4, 10^5, 10^6 cells
    python benchmarks/scale.py --sizes 10000 100000
    python benchmarks/scale.py --smoke              # 300 cells, 50 genes (CI)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS
from speed import peak_rss_mb, report, run_isolated

N_GENES, N_HIDDEN, N_LATENT, BATCH_SIZE = 1_000, 128, 10, 128
WARMUP_STEPS = 10
CHUNK = 50_000


def write_counts(n_obs: int, n_genes: int, path: Path, seed: int = 0) -> dict:
    """Write ``n_obs × n_genes`` negative-binomial counts (CSR float32) to ``path``."""
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    gene_mean = rng.lognormal(
        mean=-2.5, sigma=1.5, size=n_genes
    )  # ~15 % non-zero, like droplet data
    dispersion = 2.0
    blocks = []
    for start in range(0, n_obs, CHUNK):
        rows = min(CHUNK, n_obs - start)
        size_factor = rng.lognormal(0.0, 0.3, size=(rows, 1))
        rate = rng.gamma(dispersion, gene_mean * size_factor / dispersion)
        blocks.append(sp.csr_matrix(rng.poisson(rate).astype(np.float32)))
    x = sp.vstack(blocks, format="csr")
    adata = ad.AnnData(x)
    adata.obs_names = [f"cell{i}" for i in range(n_obs)]
    adata.var_names = [f"gene{j}" for j in range(n_genes)]
    adata.write_h5ad(path)
    return {"nnz": int(x.nnz), "file_mb": path.stat().st_size / 2**20}


def measure(path: str, mode: str, max_steps: int) -> dict:
    """Train a VAE for at most ``max_steps`` minibatches from ``path``; time steps and memory."""
    import anndata as ad
    from lightning.pytorch.callbacks import Callback

    import mixvi

    mixvi.settings.seed = 0
    start = time.perf_counter()
    adata = ad.read_h5ad(path, backed="r" if mode == "backed" else None)
    read_seconds = time.perf_counter() - start
    start = time.perf_counter()
    mixvi.model.VAE.setup_anndata(adata)
    setup_seconds = time.perf_counter() - start
    model = mixvi.model.VAE(adata, likelihood="nb", n_hidden=N_HIDDEN, n_latent=N_LATENT)
    loader = "anndata" if mode == "backed" else "auto"
    steps_per_epoch = math.ceil(adata.n_obs / BATCH_SIZE)
    steps = min(steps_per_epoch, max_steps)

    stamps: list[float] = []

    class StepTimer(Callback):
        def on_train_batch_end(self, *args):
            stamps.append(time.perf_counter())

    start = time.perf_counter()
    model.train(
        max_epochs=1,
        batch_size=BATCH_SIZE,
        train_size=1.0,
        loader=loader,
        limit_train_batches=steps,
        callbacks=[StepTimer()],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    step_seconds = (
        statistics.median(np.diff(stamps[WARMUP_STEPS:])) if steps > WARMUP_STEPS + 1 else None
    )
    # per-step time × steps keeps Lightning's start-up (reported apart) out of the epoch time
    epoch_seconds = stamps[-1] - start if step_seconds is None else step_seconds * steps_per_epoch
    return {
        "n_obs": adata.n_obs,
        "n_vars": adata.n_vars,
        "mode": mode,
        "loader": model._resolve_loader(loader, "auto", "auto", {}),
        "read_seconds": read_seconds,
        "setup_seconds": setup_seconds,
        "first_step_seconds": stamps[0] - start,
        "steps_trained": steps,
        "steps_per_epoch": steps_per_epoch,
        "step_ms": None if step_seconds is None else 1000 * step_seconds,
        "epoch_seconds": epoch_seconds,
        "epoch_extrapolated": steps < steps_per_epoch,
        "peak_rss_mb": peak_rss_mb(),
        "finite_loss": bool(np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()),
    }


def table(results: list[dict]) -> str:
    lines = [
        "| cells | file MB | data | loader | read s | setup s | to 1st step s | ms/step | s/epoch | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        step = "–" if r["step_ms"] is None else f"{r['step_ms']:.1f}"
        epoch = f"{r['epoch_seconds']:.1f}" + (
            f" (from {r['steps_trained']} of {r['steps_per_epoch']} steps)"
            if r["epoch_extrapolated"]
            else ""
        )
        lines.append(
            f"| {r['n_obs']:,} | {r['file_mb']:.0f} | {r['mode']} | {r['loader']} | {r['read_seconds']:.1f} | "
            f"{r['setup_seconds']:.1f} | {r['first_step_seconds']:.1f} | {step} | {epoch} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--max-steps", type=int, default=400, help="minibatches trained per run")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--workdir", type=Path, help="where the .h5ad files go (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    sizes, n_genes, max_steps = (
        ([300], 50, 20) if args.smoke else (args.sizes, N_GENES, args.max_steps)
    )

    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for n_obs in sizes:
            path = Path(workdir) / f"counts_{n_obs}.h5ad"
            t = time.perf_counter()
            # in a child process too, so that this parent stays small (see peak_rss_mb)
            written = run_isolated(write_counts, n_obs, n_genes, path)
            print(
                f"{n_obs} cells: wrote {written['file_mb']:.0f} MB in {time.perf_counter() - t:.0f} s",
                flush=True,
            )
            for mode in ("in-memory", "backed"):
                result = run_isolated(measure, str(path), mode, max_steps)
                results.append({**result, **written})
                print(
                    f"{n_obs} {mode}: {result['epoch_seconds']:.1f} s/epoch, {result['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
            path.unlink()
    meta = {"wall_seconds": time.perf_counter() - start, "smoke": args.smoke}
    notes = [
        f"- data: synthetic NB counts, CSR float32, {n_genes} genes, "
        f"{100 * results[0]['nnz'] / (results[0]['n_obs'] * results[0]['n_vars']):.0f} % non-zero; "
        f"VAE (NB), 1 hidden layer of {N_HIDDEN}, latent {N_LATENT}, batch {BATCH_SIZE}",
        "- read: `read_h5ad` (backed: opening the file); setup: `setup_anndata`, which checks every value "
        "(in row blocks when backed); to 1st step: from `train()` to the end of the first minibatch "
        "(includes copying the data for the in-memory loader)",
        f"- s/epoch: the median step time after {WARMUP_STEPS} warm-up steps times the steps of a full "
        "epoch; where fewer steps were trained than an epoch has, the table says so",
        "- peak RSS: maximum resident memory of the process that read the file and trained",
    ]
    report(
        "Scale: time per epoch and peak memory",
        notes,
        table(results),
        meta,
        results,
        args.out / ("scale_smoke" if args.smoke else "scale"),
        argv,
    )
    return results


if __name__ == "__main__":
    main()
