"""The GMVAE's mixture start on real counts, compared without labels: agreement across seeds.

pbmc3k is test data: its labels may not choose a setting. What may is a label-free
criterion, and this script measures one: how much the GMVAE's clusters agree from one seed
to the next (the mean adjusted Rand index over every pair of seeds, on the same cells),
beside the ELBO per cell. A start whose clusters change with the seed is a start whose
result a user cannot trust. The rule, fixed before the run: the count default takes the
start with the higher agreement across seeds, among the starts that did not lose on the
development simulation (``count_settings.py``'s ``count_start`` table). ARI and NMI
against the labels are printed too, to score the result, and chose nothing.

Every fit is ``quality.py``'s ``gmvae`` on the dataset (scanpy's preprocessing, 2,000
highly variable genes, the library's count defaults, epochs included), with only the start
pinned (``init``):

- ``umap``: a Gaussian mixture on a 10-D UMAP of the pretrained latent;
- ``leiden``: Leiden at K on the pretrained latent's neighbour graph;
- ``pca``: Leiden at K on the neighbour graph of PCA-50 of the encoder's input (the
  depth-normalised log counts): the scanpy pipeline's clusters, moved into the latent.

Usage::

    python benchmarks/start_stability.py --seeds 0 1 2 3 4
    python benchmarks/start_stability.py --seeds 0 1 2 3 4 --starts leiden pca
    python benchmarks/start_stability.py --smoke        # 300 cells, 2 epochs (CI)
"""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import quality
from common import command_line, finish, mean_sd, run_meta, seeded_parser
from sklearn.metrics import adjusted_rand_score

import mixvi
from mixvi.metrics import clustering_scores

STARTS = ("umap", "leiden", "pca")


def fit(adata, k: int, init: str, seed: int, smoke: bool) -> dict:
    """One GMVAE as ``quality.py`` fits it on counts, with the start pinned."""
    t = time.perf_counter()
    mixvi.settings.seed = seed
    mixvi.model.GMVAE.setup_anndata(adata, layer="counts")
    model = mixvi.model.GMVAE(adata, n_components=k, likelihood="nb")
    model.train(
        max_epochs=2 if smoke else None,
        pretrain_epochs=1 if smoke else None,
        anchor_epochs=0 if smoke else None,
        init=init,
        batch_size=quality.COUNTS.batch_size,
        enable_progress_bar=False,
        enable_model_summary=False,
        train_size=1.0,
    )
    return {
        "clusters": model.get_cluster_assignments().tolist(),
        "elbo": float(model.get_elbo()),
        "seconds": time.perf_counter() - t,
    }


def agreement(clusters: list[list[int]]) -> tuple[float, float, int]:
    """Mean and sd of the ARI between every pair of seeds' clusters, and the pairs' number."""
    pairs = [adjusted_rand_score(a, b) for a, b in itertools.combinations(clusters, 2)]
    if not pairs:
        return float("nan"), float("nan"), 0
    sd = float(np.std(pairs, ddof=1)) if len(pairs) > 1 else 0.0
    return float(np.mean(pairs)), sd, len(pairs)


def summarise(per_seed: dict, starts: list[str]) -> dict:
    summary = {}
    for start in starts:
        rows = [per_seed[seed][start] for seed in per_seed]
        summary[start] = {
            **mean_sd(rows, ("ari", "nmi", "elbo", "seconds")),
            "seed_agreement": agreement([row["clusters"] for row in rows]),
            "n_seeds": len(rows),
        }
    return summary


def table(summary: dict) -> str:
    lines = [
        "| start | agreement across seeds (no labels) | ELBO per cell | ARI | NMI | seconds | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for start, s in summary.items():
        mean, sd, pairs = s["seed_agreement"]
        lines.append(
            f"| {start} | {mean:.3f} ± {sd:.3f} ({pairs} pairs) "
            f"| {s['elbo'][0]:.1f} ± {s['elbo'][1]:.1f} "
            f"| {s['ari'][0]:.3f} ± {s['ari'][1]:.3f} | {s['nmi'][0]:.3f} ± {s['nmi'][1]:.3f} "
            f"| {s['seconds'][0]:.0f} | {s['n_seeds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = seeded_parser(__doc__, "start_stability")
    parser.add_argument("--dataset", default="pbmc3k", choices=["pbmc3k", "kang"])
    parser.add_argument("--starts", nargs="+", default=list(STARTS), choices=list(STARTS))
    args = parser.parse_args(argv)
    meta = run_meta(command_line(argv), args.seeds, args.smoke)
    adata = quality.load(args.dataset, args.smoke)
    y = adata.obs[quality.CONFIGS[args.dataset].label_key].astype(str).to_numpy()
    k = len(np.unique(y))
    t0 = time.perf_counter()
    per_seed: dict = {}
    for seed in args.seeds:
        per_seed[seed] = {}
        for start in args.starts:
            row = fit(adata.copy(), k, start, seed, args.smoke)
            row.update(clustering_scores(y, np.asarray(row["clusters"])))
            per_seed[seed][start] = row
            print(
                json.dumps({"seed": seed, "start": start, **{**row, "clusters": None}}),
                flush=True,
            )
    meta["wall_seconds"] = time.perf_counter() - t0
    summary = summarise(per_seed, args.starts)
    finish(
        f"The GMVAE's mixture start on {args.dataset}, compared without labels (test data)",
        meta,
        [
            f"- {args.dataset}: test data; labels chose nothing: the start is chosen by "
            "the agreement of the clusters across seeds (mean pairwise ARI between seeds, "
            "no labels); ARI and NMI to the labels only score the result",
            f'- each fit: `GMVAE(n_components={k}, likelihood="nb")` on the counts with '
            "the library's defaults, only `init` pinned",
        ],
        table(summary),
        args.out,
        args.name,
        {"summary": summary, "per_seed": per_seed},
    )
    return summary


if __name__ == "__main__":
    main()
