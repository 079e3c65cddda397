"""Training speed: mixvi against scvi-tools' SCVI and a bare PyTorch loop on the same network.

Each measurement runs in a fresh process, so that peak memory (max RSS, and peak CUDA
memory on a GPU) belongs to that method alone. Epoch times are the median over the epochs
after a warm-up epoch. Writes ``results/speed.md`` and ``results/speed.json``.

Usage::

    python benchmarks/speed.py                 # 20,000 × 2,000 counts and Fashion-MNIST 70,000 × 784
    python benchmarks/speed.py --epochs 6      # 1 warm-up + 5 timed epochs
    python benchmarks/speed.py --repeats 3     # every method 3 times, interleaved; median of the runs
    python benchmarks/speed.py --paired        # also blocks of steps against bare steps run just before
    python benchmarks/speed.py --accelerator gpu  # on a GPU
    python benchmarks/speed.py --smoke         # tiny data, 2 epochs (CI)

Runs:

- ``counts`` (NB likelihood): mixvi VAE (default loader), mixvi VAE with scvi-tools'
  AnnData loader, mixvi VAE trained by scvi-tools' own TrainingPlan (per-step logging, the
  plan mixvi used before), SCVI with the same hidden size, layers, latent size, batch size
  and epochs, the bare loop (the floor) over the mixvi module, ``lightning`` (the same
  module and loader in a minimal LightningModule: the floor of any Lightning-based
  training), and mixvi GMVAE.
- ``fashion_mnist`` (Bernoulli): the same methods. SCVI has no Bernoulli likelihood, so it
  models the pixel intensities (0–255) as NB counts, on the same 70,000 × 784 matrix with the
  same network: its time per epoch is that of scvi-tools' default loader and training
  plan. Also the time to compute latents for all images, and ``mixvi_compiled``: the mixvi
  VAE with ``plan_kwargs={"compile": True}`` (``torch.compile``; its first, untimed epoch
  holds the compilation, shown as "warm-up s").
- On request (``--methods``): ``gmvae_compiled``, ``mixvi_cudagraphs`` (compiled with
  ``mode="reduce-overhead"``, i.e. CUDA graphs on a GPU) and ``lightning_manual`` (the
  Lightning floor with manual optimisation, which skips the optimiser closure).

The bare loop uses the optimiser that mixvi's training plan uses (Adam, fused where the
device supports it), so that "× bare" measures the framework, not the optimiser.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, command_line, commit, machine, provenance, write_results

N_HIDDEN, N_LAYERS, N_LATENT, BATCH_SIZE, LR = 128, 1, 10, 128, 1e-3


def make_data(name: str, smoke: bool):
    import anndata as ad

    import mixvi

    if name == "counts":
        from scvi.data import synthetic_iid

        n_per, n_genes = (250, 50) if smoke else (10_000, 2_000)
        adata = synthetic_iid(
            batch_size=n_per, n_genes=n_genes, n_batches=2, n_labels=1, n_proteins=0
        )
        return ad.AnnData(np.asarray(adata.X, dtype=np.float32)), "nb"
    adata = mixvi.data.fashion_mnist(split="all", n_obs=500 if smoke else None)
    return adata, "bernoulli"


def scvi_counts(adata):
    """The data as SCVI sees them: counts (pixel intensities 0–255 for the images)."""
    x = np.asarray(adata.X, dtype=np.float32)
    if x.max() <= 1:
        x = np.rint(x * 255)
    adata.X = x
    return adata


# steps per block of a paired run (--paired): about 0.2 s of this network on a CPU
PAIR_STEPS = 50


class EpochTimer:
    """Lightning callback: wall time of every training epoch.

    With ``bare_steps`` (a function that runs that many steps of the bare loop and returns
    their seconds), the epoch is cut into blocks of ``steps`` steps, and before each block
    the bare loop runs as many: every block then has a reference measured just before it,
    on the same machine in the same state. ``pairs`` holds ``(epoch, block seconds, bare
    seconds)`` for every block but each epoch's last (which also holds the epoch's end);
    the bare steps are not counted in the epoch's time.
    """

    def __init__(self, bare_steps=None, steps: int = PAIR_STEPS) -> None:
        import torch
        from lightning.pytorch.callbacks import Callback

        timer = self

        def now() -> float:
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # the GPU's queued work belongs to this epoch
            return time.perf_counter()

        class _Callback(Callback):
            def on_train_epoch_start(self, trainer, module):
                timer._block = None
                timer._paused = 0.0
                timer._start = now()

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if bare_steps is None or batch_idx % steps:
                    return
                pause = now()
                if timer._block is not None:
                    start, bare = timer._block
                    timer.pairs.append((trainer.current_epoch, pause - start, bare))
                bare = bare_steps(steps)
                timer._block = (now(), bare)
                timer._paused += timer._block[0] - pause

            def on_train_epoch_end(self, trainer, module):
                timer.times.append(now() - timer._start - timer._paused)

        self.times: list[float] = []
        self.pairs: list[tuple[int, float, float]] = []
        self.callback = _Callback()


def plan_optimiser(params):
    """The optimiser mixvi's training plan builds (scvi-tools' settings, fused Adam)."""
    import torch

    return torch.optim.Adam(params, lr=LR, eps=0.01, weight_decay=1e-6, fused=True)


def bare_floor(module, x, extra_tensors: dict, device):
    """The floor: the same module and optimiser as mixvi's over in-memory tensors, no framework.

    Returns ``run(batches)``, which takes one step per tensor of row indices and returns the
    seconds they took.
    """
    import torch
    from scvi import REGISTRY_KEYS

    module.to(device).train()
    x = x.to(device)
    extra = {k: v.to(device) for k, v in extra_tensors.items()}
    optimiser = plan_optimiser(module.parameters())

    def run(batches) -> float:
        start = time.perf_counter()
        for rows in batches:
            tensors = {REGISTRY_KEYS.X_KEY: x[rows], **{k: v[rows] for k, v in extra.items()}}
            _, _, loss = module(tensors)
            optimiser.zero_grad(set_to_none=True)
            loss.loss.backward()
            optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return run


def bare_loop(module, x, extra_tensors: dict, epochs: int, device) -> list[float]:
    """The floor's time per epoch (minibatches of a fresh permutation), for ``epochs`` epochs."""
    import torch

    run = bare_floor(module, x, extra_tensors, device)
    return [run(torch.randperm(len(x), device=device).split(BATCH_SIZE)) for _ in range(epochs)]


def bare_steps(module, x, extra_tensors: dict, device):
    """``steps(n)``: the seconds of ``n`` steps of the floor on random minibatches."""
    import torch

    run = bare_floor(module, x, extra_tensors, device)
    return lambda n: run(torch.randint(len(x), (n, BATCH_SIZE), device=device))


def lightning_floor(
    module, x, extra_tensors: dict, epochs: int, device, callback, manual: bool = False
) -> None:
    """The framework's own floor: a minimal LightningModule around the same module.

    It has what any Lightning training needs and nothing else: ``training_step`` returns
    the loss, the optimiser is the bare loop's, the minibatches come from mixvi's in-memory
    loader; no logging, metrics or callbacks besides the timer. mixvi's distance to this
    row is what its training plan, guard and scvi-tools' plumbing add; this row's distance
    to the bare loop is Lightning's loop (hooks, closure, precision and strategy calls).
    With ``manual``, the step runs Lightning's manual optimisation
    (``automatic_optimization = False``: zero_grad, backward and step in
    ``training_step``), which skips the closure that automatic optimisation wraps around it.
    """
    import lightning.pytorch as pl
    from scvi import REGISTRY_KEYS

    from mixvi.model._minibatches import DeviceBatches

    class Minimal(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.module = module
            self.automatic_optimization = not manual

        def training_step(self, batch, batch_idx):
            loss = self.module(batch)[2].loss
            if manual:
                optimiser = self.optimizers(use_pl_optimizer=False)
                optimiser.zero_grad(set_to_none=True)
                self.manual_backward(loss)
                optimiser.step()
            return loss

        def configure_optimizers(self):
            return plan_optimiser(self.parameters())

    tensors = {REGISTRY_KEYS.X_KEY: x, **extra_tensors}
    batches = DeviceBatches({k: v.to(device) for k, v in tensors.items()}, BATCH_SIZE, shuffle=True)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(Minimal(), train_dataloaders=batches)


def floor_inputs(adata, likelihood: str):
    """The bare loop's (and the Lightning floor's) module, data and batch covariate."""
    import torch
    from scvi import REGISTRY_KEYS

    from mixvi.module import VAEModule

    module = VAEModule(
        adata.n_vars,
        likelihood=likelihood,
        n_hidden=N_HIDDEN,
        n_layers=N_LAYERS,
        n_latent=N_LATENT,
        dropout_rate=0.1,
    )
    x = torch.as_tensor(np.asarray(adata.X, dtype=np.float32))
    extra = {REGISTRY_KEYS.BATCH_KEY: torch.zeros(adata.n_obs, 1, dtype=torch.long)}
    return module, x, extra


def measure(
    dataset: str, method: str, epochs: int, smoke: bool, accelerator: str, paired: bool = False
) -> dict:
    """Train one method in this (fresh) process; return epoch times, throughput and memory.

    With ``paired``, :data:`PAIR_STEPS` steps of the bare loop (its own module, same data)
    run just before each block of as many of the method's steps, and the result holds each
    block's ratio to the bare steps before it (``paired_ratios``; blocks of the warm-up
    epoch are left out).
    """
    import torch

    import mixvi

    mixvi.settings.seed = 0
    adata, likelihood = make_data(dataset, smoke)
    quiet = {"enable_progress_bar": False, "enable_model_summary": False, "train_size": 1.0}
    device = torch.device("cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu")
    paired = paired and method != "bare"
    # built before SCVI's branch turns the images into counts: the reference is the bare loop
    timer = EpochTimer(
        bare_steps(*floor_inputs(adata, likelihood), device) if paired else None,
        steps=2 if smoke else PAIR_STEPS,  # a smoke epoch has 4 steps
    )
    common = {
        "max_epochs": epochs,
        "batch_size": BATCH_SIZE,
        "accelerator": accelerator,
        "callbacks": [timer.callback],
    }
    result: dict = {
        "dataset": dataset,
        "method": method,
        "n_obs": adata.n_obs,
        "n_vars": adata.n_vars,
    }
    if method == "scvi":
        import scvi

        adata = scvi_counts(adata)
        scvi.model.SCVI.setup_anndata(adata)
        model = scvi.model.SCVI(
            adata, n_hidden=N_HIDDEN, n_layers=N_LAYERS, n_latent=N_LATENT, gene_likelihood="nb"
        )
        model.train(plan_kwargs={"lr": LR}, **common, **quiet)
        times = timer.times
    elif method in ("mixvi", "mixvi_anndata_loader", "mixvi_scvi_plan", "gmvae", *COMPILED):
        compiled = COMPILED.get(method)
        base = method.split("_")[0] if compiled is not None else method  # mixvi or gmvae
        cls = mixvi.model.GMVAE if base == "gmvae" else mixvi.model.VAE
        if method == "mixvi_scvi_plan":
            from scvi.train import TrainingPlan

            cls = type("VAEWithScviPlan", (cls,), {"_training_plan_cls": TrainingPlan})
        cls.setup_anndata(adata)
        kwargs = {"n_components": 10} if base == "gmvae" else {}
        model = cls(
            adata,
            likelihood=likelihood,
            n_hidden=N_HIDDEN,
            n_layers=N_LAYERS,
            n_latent=N_LATENT,
            dropout_rate=0.1,
            **kwargs,
        )
        plan = {"eps": 0.01} if base == "gmvae" else {}
        if compiled is not None:
            plan.update(compile=True, compile_kwargs=dict(compiled))
        train = {
            "plan_kwargs": plan,
            **({"pretrain_epochs": 0, "init": None} if base == "gmvae" else {}),
        }
        loader = "anndata" if method == "mixvi_anndata_loader" else "auto"
        result["loader"] = model._resolve_loader(loader, accelerator, "auto", {})
        model.train(lr=LR, loader=loader, **train, **common, **quiet)
        times = timer.times
        if method == "mixvi" and dataset == "fashion_mnist":
            for batch_size in (None, 128):
                start = time.perf_counter()
                model.get_latent_representation(batch_size=batch_size)
                result[
                    f"latent_seconds_batch_{batch_size or mixvi.model._minibatches.INFERENCE_BATCH_SIZE}"
                ] = time.perf_counter() - start
    elif method in ("bare", "lightning", "lightning_manual"):
        module, x, extra = floor_inputs(adata, likelihood)
        if method == "bare":
            times = bare_loop(module, x, extra, epochs, device)
        else:
            manual = method == "lightning_manual"
            lightning_floor(module, x, extra, epochs, device, timer.callback, manual=manual)
            times = timer.times
    else:
        raise ValueError(method)
    timed = times[1:] if len(times) > 1 else times
    result["epoch_seconds"] = statistics.median(timed)
    if paired:
        result["paired_blocks"] = timer.pairs
        first = len(times) - len(timed)  # the warm-up epoch, left out as from s/epoch
        result["paired_ratios"] = [t / b for epoch, t, b in timer.pairs if epoch >= first]
    result["epoch_times"] = times
    result["cells_per_second"] = adata.n_obs / result["epoch_seconds"]
    result["peak_rss_mb"] = peak_rss_mb()
    if torch.cuda.is_available():
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB.

    Linux's ``ru_maxrss`` survives ``exec``, so a spawned child would report at least the
    parent's memory at the time of the fork; ``VmHWM`` belongs to the current program only.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(queue, fn, *args) -> None:
    try:
        queue.put(fn(*args))
    except BaseException as error:  # noqa: BLE001 (report anything, or the parent hangs)
        queue.put({"error": repr(error)})


def run_isolated(fn, *args) -> dict:
    """``fn(*args)`` in a fresh (spawned) process, so that its peak memory is its own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, *args))
    proc.start()
    result = queue.get()
    proc.join()
    if isinstance(result, dict) and "error" in result:
        raise RuntimeError(f"{fn.__name__}{args[:2]} failed: {result['error']}")
    return result


def report(
    title: str,
    notes: list[str],
    body: str,
    meta: dict,
    results: list[dict],
    stem: Path,
    argv: list[str] | None,
) -> None:
    """Print a result table under its provenance and write it to ``stem``.md and ``stem``.json.

    ``meta`` may hold the ``commit`` read when the run started; otherwise it is read now.
    """
    meta = {"command": command_line(argv), "commit": commit(), "machine": machine(), **meta}
    text = "\n".join([*provenance(title, meta, notes), "", body, ""])
    print(text)
    write_results(stem, text, {"meta": meta, "results": results})


# torch.compile variants (plan_kwargs={"compile": True, "compile_kwargs": ...}); the first
# epoch, which is not timed, holds the compilation ("warm-up s" in the table)
COMPILED = {
    "mixvi_compiled": {},
    "gmvae_compiled": {},
    "mixvi_cudagraphs": {"mode": "reduce-overhead"},
}
# on request only: the Lightning floor with manual optimisation
EXTRA = ["lightning_manual"]
_DEFAULT = [
    "bare",
    "lightning",
    "mixvi",
    "mixvi_anndata_loader",
    "mixvi_scvi_plan",
    "scvi",
    "gmvae",
]
METHODS = [*_DEFAULT, *COMPILED, *EXTRA]
# Compiling takes tens of seconds on a CPU, so by default only the images (the GPU target)
# get the compiled VAE; the GMVAE's and CUDA graphs' variants are there to be asked for.
PLAN = {"counts": _DEFAULT, "fashion_mnist": [*_DEFAULT, "mixvi_compiled"]}


def median_run(runs: list[dict]) -> dict:
    """The run with the median time per epoch, carrying every run's time.

    Paired runs also get ``paired_ratio``: the median of every run's ratios of a block of
    steps to the bare steps before it, with their quartiles (``paired_quartiles``).
    """
    ordered = sorted(runs, key=lambda r: r["epoch_seconds"])
    chosen = {
        **ordered[(len(ordered) - 1) // 2],
        "run_epoch_seconds": [r["epoch_seconds"] for r in runs],
    }
    ratios = [x for r in runs for x in r.get("paired_ratios", [])]
    if ratios:
        chosen["paired_ratio"] = statistics.median(ratios)
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        chosen["paired_quartiles"] = [low, high]
        chosen["n_paired_blocks"] = len(ratios)
    return chosen


def _ratio(row: dict, ref: dict | None) -> str:
    return f"{row['epoch_seconds'] / ref['epoch_seconds']:.2f}" if ref else "–"


def _paired(row: dict) -> str:
    if "paired_ratio" not in row:
        return "–"
    low, high = row["paired_quartiles"]
    return f"{row['paired_ratio']:.2f} ({low:.2f}–{high:.2f})"


def table(results: list[dict]) -> str:
    paired = any("paired_ratio" in r for r in results)
    lines = [
        "| dataset | method | loader | s/epoch | warm-up s | cells/s | × bare | × Lightning | × SCVI | × mixvi VAE | peak RSS MB |"
        + (" × bare, paired (quartiles) |" if paired else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if paired else ""),
    ]
    by = {(r["dataset"], r["method"]): r for r in results}
    for r in results:
        bare = by.get((r["dataset"], "bare"))
        floor = by.get((r["dataset"], "lightning"))
        scvi_r = by.get((r["dataset"], "scvi"))
        vae = by.get((r["dataset"], "mixvi"))
        lines.append(
            f"| {r['dataset']} ({r['n_obs']}×{r['n_vars']}) | {r['method']} | {r.get('loader', '–')} | "
            f"{r['epoch_seconds']:.2f} | {r['epoch_times'][0]:.2f} | {r['cells_per_second']:.0f} | {_ratio(r, bare)} | {_ratio(r, floor)} | {_ratio(r, scvi_r)} | "
            f"{_ratio(r, vae)} | {r['peak_rss_mb']:.0f} |" + (f" {_paired(r)} |" if paired else "")
        )
    extra = [
        f"- latents for {r['n_obs']} images: "
        + ", ".join(
            f"{k.removeprefix('latent_seconds_')} {v:.2f} s"
            for k, v in r.items()
            if k.startswith("latent_seconds")
        )
        for r in results
        if any(k.startswith("latent_seconds") for k in r)
    ]
    return "\n".join([*lines, "", *extra])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(PLAN), choices=list(PLAN))
    parser.add_argument("--epochs", type=int, default=4, help="1 warm-up epoch + the timed ones")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of every method, interleaved (method by method, round after round), so that "
        "a slow spell of a shared machine hits all methods alike; the median run is reported",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        help="methods to run, on every dataset (default: PLAN)",
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help=f"in every method's process, run {PAIR_STEPS} steps of the bare loop before each "
        f"block of {PAIR_STEPS} of the method's steps, and report the median ratio of each block "
        "to the bare steps just before it: a slow spell of a shared machine then hits both sides "
        "of each ratio",
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="speed", help="file name (stem) of the results")
    args = parser.parse_args(argv)
    epochs = 2 if args.smoke else args.epochs

    start = time.perf_counter()
    results = []
    for dataset in args.datasets:
        methods = args.methods or PLAN[dataset]
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for _ in range(args.repeats):
            for method in methods:
                runs[method].append(
                    run_isolated(
                        measure, dataset, method, epochs, args.smoke, args.accelerator, args.paired
                    )
                )
                last = runs[method][-1]
                pair = last.get("paired_ratios")
                pair = f", paired × bare {statistics.median(pair):.2f}" if pair else ""
                print(f"{dataset} {method}: {last['epoch_seconds']:.2f} s/epoch{pair}", flush=True)
        results.extend(median_run(runs[m]) for m in methods)
    meta = {
        "epochs": epochs,
        "repeats": args.repeats,
        "wall_seconds": time.perf_counter() - start,
        "smoke": args.smoke,
        "paired": args.paired,
    }
    notes = [
        f"- {epochs} epochs per run, median of all but the first; batch {BATCH_SIZE}, "
        f"{N_LAYERS} hidden layer(s) of {N_HIDDEN}, latent {N_LATENT}",
        f"- {args.repeats} run(s) of every method, interleaved; the run with the median "
        "s/epoch is shown (all runs' times are in the JSON)",
    ]
    if args.paired:
        notes.append(
            f"- paired: in every method's process, {PAIR_STEPS} steps of the bare loop (random "
            f"minibatches) ran before each block of {PAIR_STEPS} of the method's steps; \"× bare, "
            "paired\" is the median over all runs' blocks after the warm-up epoch of block / bare "
            "steps before it, with its quartiles (peak RSS includes the bare loop's module)"
        )
    report(
        "Training speed",
        notes,
        table(results),
        meta,
        results,
        args.out / (f"{args.name}_smoke" if args.smoke else args.name),
        argv,
    )
    return results


if __name__ == "__main__":
    main()
