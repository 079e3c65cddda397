"""What every benchmark shares: provenance, result files, seed summaries, Leiden at K, K choice.

No benchmark script imports a sibling that imports it back: each imports this module, and
``quality.py`` (the one table) also imports ``conditional.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import anndata as ad
import numpy as np

from mixvi.model import leiden_clusters

RESULTS = Path(__file__).parent / "results"
# the candidates of gmvae_auto_k, the same on every dataset, so that no label sets the range
K_CANDIDATES = range(2, 21)


# -- provenance ---------------------------------------------------------------------------
def seeded_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The options every seeded benchmark takes: ``--seeds``, ``--smoke``, ``--out``, ``--name``.

    ``doc`` is the script's docstring (its first line describes the parser); ``name`` is the
    default file stem of its results.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default=name)
    return parser


def command_line(argv: list[str] | None) -> str:
    """How the script was called, to record with its results."""
    args = [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    return "python " + " ".join(shlex.quote(a) for a in args)


def commit() -> str:
    """The checked-out commit, marked when the measured code (src, benchmarks) has changes.

    git runs in the repository's root: its paths would otherwise be read from the working
    directory, and a script run from ``benchmarks/`` would see no changes to ``src``.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=root
        ).stdout.strip()
        dirty = subprocess.run(
            # results written by earlier runs are not changes to what is measured
            ["git", "status", "--porcelain", "--", "src", "benchmarks", ":!benchmarks/results"],
            capture_output=True,
            text=True,
            cwd=root,
        ).stdout
        return sha + (" (uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    """Processor, cores, GPU and torch version."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {device}, torch {torch.__version__}"


def run_meta(command: str, seeds: list[int], smoke: bool) -> dict:
    """What a results file records about its run: command, commit, machine, seeds.

    The commit is read when the run starts, so that edits made while it runs do not mark
    its code as changed.
    """
    return {"command": command, "commit": commit(), "machine": machine(), "seeds": seeds} | {
        "smoke": smoke
    }


def provenance(title: str, meta: dict, notes: Sequence[str] = ()) -> list[str]:
    """The header lines of a results table: title, command, commit, machine, notes."""
    return [
        f"# {title}",
        "",
        f"- command: `{meta['command']}`",
        f"- commit: `{meta['commit']}`",
        f"- machine: {meta['machine']}",
        *notes,
    ]


def write_results(stem: Path, text: str, payload: dict) -> None:
    """Write a table to ``stem``.md and its data (``meta`` and results) to ``stem``.json."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1))


def finish(
    title: str,
    meta: dict,
    notes: Sequence[str],
    table: str,
    out: Path,
    name: str,
    payload: dict,
    partial: bool = False,
) -> str:
    """Print and write a seeded run's table: provenance, seeds and wall time, notes, table.

    The files are ``out/name``.md and .json (``name_smoke`` for a smoke run); the JSON holds
    ``meta`` and ``payload``. A ``partial`` table, written while the run goes on so that a
    stopped run keeps what it did, is written but not printed.
    """
    text = "\n".join(
        [
            *provenance(title, meta),
            seeds_line(meta, partial),
            *notes,
            "",
            table,
            "",
        ]
    )
    if not partial:
        print(text)
    stem = out / (name + ("_smoke" if meta["smoke"] else ""))
    write_results(stem, text, {"meta": meta, **payload})
    return text


def seeds_line(meta: dict, partial: bool = False) -> str:
    """The header line naming a table's seeds and the machine time it cost.

    A merged table's time is its runs' added up (see :func:`merged_meta`), and says so; a
    table written while its run goes on gives the time so far.
    """
    runs = len(meta.get("merged", ()))
    summed = f", summed over the {runs} runs" if runs > 1 else ""
    so_far = " so far" if partial else ""
    return f"- seeds: {meta['seeds']}; wall time {meta['wall_seconds']:.0f} s{summed}{so_far}"


def seeds_named(seeds: Sequence[int]) -> str:
    """``seed 2`` or ``seeds 0, 1``: the seeds one merged run gave rows for."""
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def partial_lines(done: int, planned: int | None, unit: str) -> list[str]:
    """The header line of a table written while its run goes on: how many ``unit`` are done.

    Empty once the run is complete (or where nothing was planned, as in a merged table).
    """
    if planned is None or done >= planned:
        return []
    return [f"- partial: {done} of {planned} {unit} done"]


def merged_meta(metas: Sequence[dict], command: str, seeds: Iterable[int]) -> dict:
    """The ``meta`` of one table merged from several runs' results.

    Every run's command, then the merge's own; each commit and machine once; smoke if any
    run was; the wall time is the runs' added up (the machine time the table cost); the
    runs' own metas under ``merged``.
    """
    return {
        "command": " ; ".join(m["command"] for m in metas) + f" ; then {command}",
        "commit": ", ".join(dict.fromkeys(m["commit"] for m in metas)),
        "machine": ", ".join(dict.fromkeys(m["machine"] for m in metas)),
        "seeds": sorted({int(s) for s in seeds}),
        "smoke": any(m["smoke"] for m in metas),
        "wall_seconds": sum(m["wall_seconds"] for m in metas),
        "merged": list(metas),
    }


def take_rows(into: dict, rows: dict, label: str, keys: tuple = ()) -> list[tuple]:
    """Copy the scores of one merged run, nested as ``label`` names them, into ``into``.

    ``label`` formats a row's keys, e.g. ``"seed {0} {1}"`` for (seed, method); ``keys`` are
    those already chosen above ``rows``. Runs merged into one table were measured apart, and
    a row given by two of them would be averaged as two seeds, so it is refused. Returns the
    keys of the rows taken.
    """
    depth = label.count("{") - len(keys)
    taken = []
    for key, value in rows.items():
        if depth > 1:
            taken += take_rows(into.setdefault(key, {}), value, label, (*keys, key))
            continue
        if key in into:
            raise ValueError(f"{label.format(*keys, key)} is in more than one merged run.")
        into[key] = value
        taken.append((*keys, key))
    return taken


# -- summaries ----------------------------------------------------------------------------
def mean_sd(rows: list[dict], keys: Iterable[str]) -> dict:
    """``[mean, sd]`` over seeds (one row each) of every score in ``keys``, and ``n_seeds``.

    The sd is the sample standard deviation (``ddof=1``): ``np.std``'s default divides by
    the number of seeds and understates the spread of five; one seed has an sd of 0.
    """
    ddof = 1 if len(rows) > 1 else 0
    return {
        key: [
            float(np.mean([r[key] for r in rows])),
            float(np.std([r[key] for r in rows], ddof=ddof)),
        ]
        for key in keys
    } | {"n_seeds": len(rows)}


def plus_minus(value: Sequence[float]) -> str:
    """A ``[mean, sd]`` of :func:`mean_sd` as the tables print it: ``0.123 ± 0.004``."""
    return f"{value[0]:.3f} ± {value[1]:.3f}"


def summarise_methods(per_seed: dict, methods: Iterable[str]) -> dict:
    """Per method with rows: :func:`mean_sd` of the scores its first seed's row has."""
    summary = {}
    for method in methods:
        rows = [r[method] for r in per_seed.values() if method in r]
        if rows:
            summary[method] = mean_sd(rows, rows[0])
    return summary


# -- real counts ---------------------------------------------------------------------------
#: highly variable genes every benchmark on real counts keeps
N_TOP_GENES = 2_000


def count_genes(adata: ad.AnnData, layer: str = "counts", smoke: bool = False) -> ad.AnnData:
    """What a scanpy user keeps of real counts, in place.

    Genes seen in 3 cells or more, then the :data:`N_TOP_GENES` highly variable ones
    (seurat_v3, on the counts in ``layer``).

    With ``smoke``, first a random 1,500 cells (or all there are), for the scripts' smoke runs.
    """
    import scanpy as sc

    if smoke:
        rng = np.random.default_rng(0)
        keep = np.sort(rng.choice(adata.n_obs, min(1_500, adata.n_obs), replace=False))
        adata._inplace_subset_obs(keep)
    sc.pp.filter_genes(adata, min_cells=3)
    sc.pp.highly_variable_genes(
        adata, n_top_genes=N_TOP_GENES, flavor="seurat_v3", layer=layer, subset=True
    )
    return adata


# -- shared baselines and the choice of K -------------------------------------------------
def leiden_k(adata: ad.AnnData, use_rep: str, k: int, seed: int) -> np.ndarray:
    """Leiden clusters with the resolution bisected until there are ``k`` clusters (or closest)."""
    return leiden_clusters(adata.obsm[use_rep], k, seed, exact=False)


def scvi_latent(
    adata: ad.AnnData,
    seed: int,
    layer: str | None = "counts",
    batch_key: str | None = None,
    **train,
) -> np.ndarray:
    """ScVI's latent of the counts in ``layer``, with scvi-tools' defaults (10 latents, NB).

    scVI is registered on a copy, so that its fields stay off the cells the other methods
    register. ``batch_key`` is scVI's batch; ``train`` goes to ``SCVI.train`` (without
    ``max_epochs``, scvi-tools' heuristic of the data size), with no progress bar.
    """
    import scvi

    scvi.settings.seed = seed
    adata = adata.copy()
    scvi.model.SCVI.setup_anndata(adata, layer=layer, batch_key=batch_key)
    model = scvi.model.SCVI(adata)
    model.train(**({"enable_progress_bar": False, "enable_model_summary": False} | train))
    return model.get_latent_representation()


def chosen_k(
    adata: ad.AnnData, model_kwargs: dict, pretrain_epochs: int, batch_size: int, seed: int
) -> int:
    """The K of ``GMVAE.compare_n_components`` among :data:`K_CANDIDATES`, without labels."""
    import mixvi
    from mixvi.model import _n_components

    table = mixvi.model.GMVAE.compare_n_components(
        adata,
        [k for k in K_CANDIDATES if k <= adata.n_obs],
        seed=seed,
        model_kwargs=model_kwargs,
        train_kwargs={
            "batch_size": batch_size,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        fit_models=False,
        selection_epochs=pretrain_epochs,
    )
    return _n_components.chosen_k(table)
