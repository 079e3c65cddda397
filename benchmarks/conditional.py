"""Clusters free of the condition: the conditional GMVAE against integration baselines.

Two datasets (``--data``):

- ``simulation`` (development data): :func:`mixvi.data.simulate_counts`, NB counts of 5 cell
  types in unequal proportions (35/25/20/12/8 %) under 3 conditions, each of which multiplies
  every gene by its own log-normal factor (sd 1 on the log scale), with log-normal library
  sizes;
- ``kang`` (test data: no setting is chosen by its scores): :func:`mixvi.data.kang18`, real
  UMI counts of PBMCs from 8 donors, control and IFN-β stimulated, 10 labelled types, on the
  2,000 seurat_v3 genes of the counts.

The data are the same for every seed; the seed changes the methods' randomness. Labels only
score. Prints a table of mean ± sd over seeds and writes ``results/conditional.md`` (or
``conditional_kang.md``) and ``.json``.

Usage::

    python benchmarks/conditional.py                 # 5,000 cells × 1,000 genes, 5 seeds
    python benchmarks/conditional.py --data kang     # 13,576 cells × 2,000 genes, 5 seeds
    python benchmarks/conditional.py --smoke         # 400 cells, 1 epoch (CI)
    python benchmarks/conditional.py --merge A.json B.json --name conditional_kang

Methods (K = number of cell types, the only thing taken from the labels):

- ``gmvae``: mixvi's conditional GMVAE (``condition_key="condition"``), argmax q(c|x).
- ``cvae_kmeans`` / ``cvae_leiden``: k-means / Leiden (resolution bisected to K clusters) on
  the latent of mixvi's CVAE with the same condition.
- ``scvi_leiden``: Leiden on scvi-tools' SCVI latent (``batch_key="condition"``).
- ``harmony_leiden``: Harmony (``harmonypy``, the ``bench`` extra) on PCA-50 of the
  log-normalised values, with the condition as its batch, then Leiden; absent without
  harmonypy, as the table says.
- ``pca_leiden``: scanpy's standard pipeline (normalise, log1p, PCA-50), then Leiden.

Scores: ACC (Hungarian-matched), ARI and NMI of the clusters with the cell type (higher is
better), ARI and NMI with the condition (0 is best). On each embedding, integration scores
(all in [0, 1], higher is better):

- with ``scib-metrics`` installed (``pip install -e ".[bench]"``): its bio-conservation scores
  ``silhouette_label`` (``type_asw``) and ``clisi_knn`` (``type_clisi``), and its batch-correction
  scores ``silhouette_batch`` (``condition_asw``), ``ilisi_knn`` (``condition_ilisi``) and
  ``graph_connectivity``, on exact 90-nearest-neighbour graphs (15 for graph connectivity), as
  scib-metrics' ``Benchmarker`` uses them;
- without it: the two silhouettes from scikit-learn, defined as scib defines them (the type
  silhouette rescaled to [0, 1]; ``1 - |s|`` of the condition silhouette within each type).

With scib-metrics, each embedding also gets the aggregates of scib-metrics' ``Benchmarker``,
unscaled (the ``Benchmarker`` min-max scales each score over the methods it is given):
``bio_conservation`` (the mean of the type scores), ``batch_correction`` (the mean of the
condition scores and graph connectivity) and ``scib_total`` (0.6 × bio + 0.4 × batch).

The table names which scorer ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scanpy as sc
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_samples
from sklearn.neighbors import NearestNeighbors

import mixvi
from mixvi.metrics import clustering_scores

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    RESULTS,
    chosen_k,
    command_line,
    count_genes,
    leiden_k,
    merged_meta,
    partial_lines,
    plus_minus,
    provenance,
    run_meta,
    scvi_latent,
    seeds_line,
    seeds_named,
    summarise_methods,
    take_rows,
    write_results,
)

METHODS = (
    "gmvae",
    "gmvae_auto_k",
    "cvae_kmeans",
    "cvae_leiden",
    "scvi_leiden",
    "harmony_leiden",
    "pca_leiden",
)
DATA = ("simulation", "kang")

PROPORTIONS = [35, 25, 20, 12, 8]
CLUSTER_SCORES = ("type_acc", "type_ari", "type_nmi", "condition_ari", "condition_nmi")
SILHOUETTES = ("type_asw", "condition_asw")
SCIB_SCORES = (*SILHOUETTES, "type_clisi", "condition_ilisi", "graph_connectivity")
BIO, BATCH = ("type_asw", "type_clisi"), ("condition_asw", "condition_ilisi", "graph_connectivity")
AGGREGATES = ("bio_conservation", "batch_correction", "scib_total")


def integration_scorer() -> str:
    """``"scib-metrics <version>"`` where the ``bench`` extra is installed, else ``"scikit-learn"``."""
    try:
        import scib_metrics
    except ImportError:
        return "scikit-learn"
    return f"scib-metrics {scib_metrics.__version__}"


def harmony_missing() -> str | None:
    """``None`` where harmonypy imports, else why it does not."""
    try:
        import harmonypy  # noqa: F401
    except ImportError as error:
        return f"{type(error).__name__}: {error}"
    return None


def harmony(pcs: np.ndarray, obs, seed: int) -> np.ndarray:
    """Harmony's correction of principal components for ``obs["condition"]``, cells in rows."""
    import harmonypy

    corrected = harmonypy.run_harmony(
        pcs, obs, "condition", random_state=seed, verbose=False
    ).Z_corr
    # harmonypy 2 returns cells x PCs, earlier versions PCs x cells
    return np.asarray(corrected if len(corrected) == len(pcs) else corrected.T)


def simulate(smoke: bool):
    n_cells, n_genes = (400, 200) if smoke else (5_000, 1_000)
    return mixvi.data.simulate_counts(
        n_cells=n_cells, n_genes=n_genes, n_types=5, n_conditions=3, proportions=PROPORTIONS, seed=0
    )


def load(data: str, smoke: bool):
    """The simulation, or Kang 2018 on its 2,000 seurat_v3 genes (counts in ``layers["counts"]``)."""
    if data == "simulation":
        return simulate(smoke)
    return count_genes(mixvi.data.kang18(), smoke=smoke)


def with_aggregates(scores: dict) -> dict:
    """scib-metrics' bio-conservation, batch-correction and total scores, where it scored."""
    if not all(key in scores for key in (*BIO, *BATCH)):
        return scores
    bio = float(np.mean([scores[key] for key in BIO]))
    batch = float(np.mean([scores[key] for key in BATCH]))
    return scores | {
        "bio_conservation": bio,
        "batch_correction": batch,
        "scib_total": 0.6 * bio + 0.4 * batch,
    }


def embedding_scores(embedding: np.ndarray, types: np.ndarray, conditions: np.ndarray) -> dict:
    """Integration scores of one embedding: scib-metrics' where installed, else silhouettes."""
    if integration_scorer() == "scikit-learn":
        return sklearn_silhouettes(embedding, types, conditions)
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults

    # Exact neighbours: at a few thousand cells they cost little, and no approximate search
    # adds its own randomness to the scores.
    distances, indices = (
        NearestNeighbors(n_neighbors=min(90, len(embedding))).fit(embedding).kneighbors(embedding)
    )
    neighbours = NeighborsResults(indices=indices, distances=distances)
    return {
        "type_asw": float(scib_metrics.silhouette_label(embedding, types)),
        "condition_asw": float(scib_metrics.silhouette_batch(embedding, types, conditions)),
        "type_clisi": float(scib_metrics.clisi_knn(neighbours, types)),
        "condition_ilisi": float(scib_metrics.ilisi_knn(neighbours, conditions)),
        "graph_connectivity": float(
            scib_metrics.graph_connectivity(neighbours.subset_neighbors(15), types)
        ),
    }


def sklearn_silhouettes(embedding: np.ndarray, types: np.ndarray, conditions: np.ndarray) -> dict:
    """Scib's two ASW scores, from scikit-learn's silhouettes (no jax needed)."""
    type_asw = (float(np.mean(silhouette_samples(embedding, types))) + 1) / 2
    per_type = []
    for t in np.unique(types):
        inside = types == t
        if len(np.unique(conditions[inside])) > 1:
            per_type.append(
                float(
                    np.mean(1 - np.abs(silhouette_samples(embedding[inside], conditions[inside])))
                )
            )
    return {"type_asw": type_asw, "condition_asw": float(np.mean(per_type))}


# GMVAE.train's default, named so that the choice of K pretrains with the model's batches
GMVAE_BATCH_SIZE = 128
# every model's epochs (the GMVAE's pretraining, and its choice of K, take half as many more)
EPOCHS = 120


def run_seed(adata, seed: int, smoke: bool, methods: list[str]) -> dict:
    types = adata.obs["cell_type"].astype(str).to_numpy()
    conditions = adata.obs["condition"].astype(str).to_numpy()
    k = len(np.unique(types))
    epochs = 1 if smoke else EPOCHS
    quiet = {"enable_progress_bar": False, "enable_model_summary": False}
    out: dict[str, dict] = {}

    def score(method: str, clusters, embedding: np.ndarray, seconds: float) -> None:
        by_type = clustering_scores(types, clusters)
        out[method] = {
            "type_acc": by_type["acc"],
            "type_ari": by_type["ari"],
            "type_nmi": by_type["nmi"],
            "condition_ari": adjusted_rand_score(conditions, clusters),
            "condition_nmi": normalized_mutual_info_score(conditions, clusters),
            **with_aggregates(embedding_scores(embedding, types, conditions)),
            "seconds": seconds,
        }

    work = adata.copy()
    for method in ("gmvae", "gmvae_auto_k"):
        if method not in methods:
            continue
        t = time.perf_counter()
        mixvi.settings.seed = seed
        mixvi.model.GMVAE.setup_anndata(work, layer="counts", condition_key="condition")
        n_components = k
        if method == "gmvae_auto_k":  # K chosen without the labels
            n_components = chosen_k(
                work, {"likelihood": "nb"}, epochs // 2 or 1, GMVAE_BATCH_SIZE, seed
            )
            mixvi.settings.seed = seed
        model = mixvi.model.GMVAE(work, n_components=n_components, likelihood="nb")
        model.train(
            max_epochs=epochs + (epochs // 2 or 1),
            pretrain_epochs=epochs // 2 or 1,
            batch_size=GMVAE_BATCH_SIZE,
            **quiet,
        )
        model.write_results(work)
        score(method, work.obs["gmvae_cluster"], work.obsm["X_gmvae"], time.perf_counter() - t)
        if method == "gmvae_auto_k":
            out[method] |= {"chosen_k": n_components, "true_k": k}

    if {"cvae_kmeans", "cvae_leiden"} & set(methods):
        t = time.perf_counter()
        mixvi.settings.seed = seed
        mixvi.model.CVAE.setup_anndata(work, layer="counts", condition_key="condition")
        cvae = mixvi.model.CVAE(work, likelihood="nb")
        cvae.train(max_epochs=epochs, **quiet)
        cvae.write_results(work)
        embed = time.perf_counter() - t
        for method, fit in (
            (
                "cvae_kmeans",
                lambda: KMeans(k, n_init=10, random_state=seed).fit_predict(work.obsm["X_cvae"]),
            ),
            ("cvae_leiden", lambda: leiden_k(work, "X_cvae", k, seed)),
        ):
            if method in methods:
                t = time.perf_counter()
                clusters = fit()
                score(method, clusters, work.obsm["X_cvae"], embed + time.perf_counter() - t)

    if "scvi_leiden" in methods:
        t = time.perf_counter()
        work.obsm["X_scvi"] = scvi_latent(
            work, seed, batch_key="condition", max_epochs=epochs, **quiet
        )
        clusters = leiden_k(work, "X_scvi", k, seed)
        score("scvi_leiden", clusters, work.obsm["X_scvi"], time.perf_counter() - t)

    if {"pca_leiden", "harmony_leiden"} & set(methods):
        t = time.perf_counter()
        lognorm = sc.AnnData(work.layers["counts"].copy())
        sc.pp.normalize_total(lognorm, target_sum=1e4)
        sc.pp.log1p(lognorm)
        sc.pp.pca(lognorm, n_comps=min(50, lognorm.n_vars - 1), random_state=seed)
        work.obsm["X_pca"] = lognorm.obsm["X_pca"]
        pca_seconds = time.perf_counter() - t
        if "pca_leiden" in methods:
            t = time.perf_counter()
            clusters = leiden_k(work, "X_pca", k, seed)
            score("pca_leiden", clusters, work.obsm["X_pca"], pca_seconds + time.perf_counter() - t)
        if "harmony_leiden" in methods and harmony_missing() is None:
            t = time.perf_counter()
            work.obsm["X_harmony"] = corrected = harmony(work.obsm["X_pca"], work.obs, seed)
            clusters = leiden_k(work, "X_harmony", k, seed)
            score("harmony_leiden", clusters, corrected, pca_seconds + time.perf_counter() - t)
    return out


def markdown(summary: dict, meta: dict) -> str:
    scib = meta["integration_scorer"].startswith("scib")
    embedding = (*SCIB_SCORES, *AGGREGATES) if scib else SILHOUETTES
    columns = (*CLUSTER_SCORES, *embedding)
    title = "real counts, Kang 2018" if meta.get("dataset") == "kang" else "simulated counts"
    lines = [
        *provenance(f"Clusters free of the condition ({title})", meta, [f"- data: {meta['data']}"]),
        seeds_line(meta),
        *partial_lines(len(meta["seeds"]), meta.get("planned"), "seeds"),
        *meta.get("source_lines", []),
        f"- integration scores of each embedding: {meta['integration_scorer']}",
        "- ARI / NMI with the type: higher is better; with the condition: 0 is best. The "
        "embedding scores lie in [0, 1], higher is better: type_* and graph_connectivity keep "
        "the types apart, condition_* mix the conditions",
        *(
            [f"- harmony_leiden did not run: {meta['harmony_missing']}"]
            if meta.get("harmony_missing")
            else []
        ),
        *(
            ["- test data: no setting was chosen by these scores"]
            if meta.get("dataset") == "kang"
            else []
        ),
        "",
        f"| method | {' | '.join(c.replace('_', ' ') for c in columns)} | seconds | seeds |",
        "|" + "---|" * (len(columns) + 3),
    ]
    for method, s in summary.items():
        cells = [plus_minus(s[k]) for k in columns]
        lines.append(f"| {method} | {' | '.join(cells)} | {s['seconds'][0]:.0f} | {s['n_seeds']} |")
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--smoke", action="store_true", help="400 cells, 1 epoch: proves the script runs"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--data", choices=DATA, default="simulation")
    parser.add_argument("--name", help="file stem (default: conditional, or conditional_kang)")
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="results of other runs: one table of them all"
    )
    args = parser.parse_args(argv)
    args.name = args.name or ("conditional" if args.data == "simulation" else "conditional_kang")
    command = command_line(argv)
    if args.merge:
        summary, text = merge(args.merge, args.out / args.name, command)
        print(text)
        return summary
    sc.settings.verbosity = 0
    start = time.perf_counter()
    meta = run_meta(command, args.seeds, args.smoke) | {"planned": len(args.seeds)}
    adata = load(args.data, args.smoke)
    meta["integration_scorer"] = integration_scorer()
    meta["dataset"] = args.data
    meta["data"] = (
        f"simulate_counts: {adata.n_obs} cells × {adata.n_vars} genes, {adata.uns['simulation']}"
        if args.data == "simulation"
        else f"kang18: {adata.n_obs} cells × {adata.n_vars} seurat_v3 genes, 10 types, "
        "control and stimulated"
    )
    if "harmony_leiden" in args.methods:
        meta["harmony_missing"] = harmony_missing()
    per_seed = {}
    stem = args.out / (f"{args.name}_smoke" if args.smoke else args.name)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        per_seed[seed] = run_seed(adata, seed, args.smoke, args.methods)
        print(
            f"seed {seed}: "
            + ", ".join(
                f"{m} type ARI {r['type_ari']:.3f} cond ARI {r['condition_ari']:.3f}"
                for m, r in per_seed[seed].items()
            ),
            flush=True,
        )
        meta["wall_seconds"] = time.perf_counter() - start
        # written after every seed, so that a stopped run keeps the seeds it finished
        meta["seeds"] = list(per_seed)
        summary, text = write(stem, per_seed, meta)
    print(text)
    return summary


def write(stem: Path, per_seed: dict, meta: dict) -> tuple[dict, str]:
    """Write the table of ``per_seed`` (seed, then method) to ``stem``.md and .json."""
    summary = summarise_methods(per_seed, METHODS)
    text = markdown(summary, meta)
    write_results(stem, text, {"meta": meta, "summary": summary, "per_seed": per_seed})
    return summary, text


#: what the runs merged into one table must share: their rows were measured on the same cells
SAME_IN_EVERY_RUN = ("dataset", "data", "integration_scorer", "smoke")


def merge(paths: list[str], stem: Path, command: str) -> tuple[dict, str]:
    """One table from the results of several runs of other seeds (or other methods).

    The runs must share the data and the integration scorer; no (seed, method) may come from
    two runs. The header names each run's file, commit and seeds.
    """
    per_seed: dict = {}
    metas, sources = [], []
    for path in paths:
        part = json.loads(Path(path).read_text())
        for key in SAME_IN_EVERY_RUN:
            if metas and part["meta"].get(key) != metas[0].get(key):
                raise ValueError(
                    f"{path} has another {key} than {paths[0]} ({part['meta'].get(key)!r} "
                    f"against {metas[0].get(key)!r}): its rows do not belong in the same table."
                )
        take_rows(per_seed, part["per_seed"], "seed {0} {1}")
        metas.append(part["meta"])
        seeds = seeds_named([int(s) for s in part["per_seed"]])
        sources.append(f"- from `{Path(path).name}` (commit `{part['meta']['commit']}`): {seeds}")
    per_seed = dict(sorted(per_seed.items(), key=lambda item: int(item[0])))
    shared = {key: metas[0].get(key) for key in SAME_IN_EVERY_RUN}
    missing = [m["harmony_missing"] for m in metas if m.get("harmony_missing")]
    meta = (
        merged_meta(metas, command, per_seed)
        | shared
        | {"source_lines": sources, "harmony_missing": missing[0] if missing else None}
    )
    return write(stem, per_seed, meta)


if __name__ == "__main__":
    main()
