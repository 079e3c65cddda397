"""The GMVAE's mixture start, and levers that act after it, in one run per dataset.

Each variant is fitted with a dataset's ``quality.py`` settings and the same seed, so the
variants differ only in what the table names. Labels score the clusters; they choose
nothing. The ELBO per cell (``GMVAE.get_elbo``, higher is better) is the label-free view.

Variants:

- ``umap``: the GMVAE as ``quality.py`` fits it (UMAP start, anchored, then free epochs).
- ``kmeans_start``: the same with ``init="kmeans"``.
- ``self_training``: the UMAP start and anchored epochs, then the free epochs in
  :data:`ROUNDS` rounds, each with q(c|x) fixed to DEC's target distribution of the
  responsibilities at the round's start, p_ic ∝ γ_ic² / Σ_j γ_jc (the anchoring mechanism,
  so each round still trains an ELBO).
- ``merge_2k``: 2K components, whose final responsibilities are merged pairwise down to K
  by Baudry et al.'s (2010) entropy criterion (:func:`entropy_merge`).
- ``kmeans_latent``: k-means (10 restarts) on the final latent means of the ``umap`` fit,
  instead of its argmax q(c|x); no fit of its own, so no ELBO.
- ``kmeans_pca50``: the baseline, k-means on PCA-50 of the same cells.

Datasets: ``pbmc`` and ``mnist5k`` as in ``quality.py``, and ``sim``: weak-marker counts
from :func:`mixvi.data.simulate_counts` (3,000 cells, 1,000 genes, 8 unequal types, 5 %
marker genes, about 1,000 counts per cell, a new simulation per seed), log-normalised and
scaled as pbmc68k_reduced was, fitted with pbmc's network and epochs.

Usage::

    python benchmarks/levers.py --datasets sim pbmc --seeds 0 1 2 3 4
    python benchmarks/levers.py --smoke        # a few hundred cells, 1 epoch (CI)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import scanpy as sc
from sklearn.cluster import KMeans

sys.path.insert(0, str(Path(__file__).parent))
import quality
from common import command_line, finish, run_meta, seeded_parser, summarise_methods
from quality import CONFIGS, HEADLINE, Config

import mixvi
from mixvi.metrics import clustering_scores

VARIANTS = ("umap", "kmeans_start", "self_training", "merge_2k", "kmeans_latent", "kmeans_pca50")
ROUNDS = 5  # self-training rounds over the free epochs
# the simulation takes pbmc's network and epochs: carried over, not tuned on it
SIM = Config("normal", "cell_type", 128, 128, 0, 25, 100, 50, n_layers=1)
HEADLINES = {**HEADLINE, "sim": "ari"}  # the score a dataset's rows are read by


def load(name: str, seed: int, smoke: bool) -> tuple[ad.AnnData, Config]:
    """The cells of ``name`` and its settings."""
    if name != "sim":
        return quality.load(name, smoke), CONFIGS[name]
    adata = mixvi.data.simulate_counts(
        n_cells=300 if smoke else 3000,
        n_genes=1000,
        n_types=8,
        n_conditions=1,
        proportions=[30, 20, 15, 10, 10, 7, 5, 3],
        marker_fraction=0.05,
        library_mean=1000,
        seed=seed,
    )
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.scale(adata, max_value=10)
    return adata, SIM


def entropy_merge(gamma: np.ndarray, k: int) -> np.ndarray:
    """Merge mixture components pairwise until ``k`` are left; the merged cluster per cell.

    Baudry et al. (2010): at each step join the two components whose union lowers the
    entropy of the responsibilities most, i.e. maximise
    Σ_i (γ_ia + γ_ib) log(γ_ia + γ_ib) − γ_ia log γ_ia − γ_ib log γ_ib.
    """
    gamma = np.asarray(gamma, dtype=np.float64)

    def xlogx(p: np.ndarray) -> np.ndarray:
        return p * np.log(np.clip(p, 1e-300, None))

    while gamma.shape[1] > k:
        own = xlogx(gamma).sum(0)
        best, pair = -np.inf, (0, 1)
        for a in range(gamma.shape[1]):
            for b in range(a + 1, gamma.shape[1]):
                gain = xlogx(gamma[:, a] + gamma[:, b]).sum() - own[a] - own[b]
                if gain > best:
                    best, pair = gain, (a, b)
        a, b = pair
        gamma[:, a] += gamma[:, b]
        gamma = np.delete(gamma, b, axis=1)
    return gamma.argmax(1)


def dec_target(gamma: np.ndarray) -> np.ndarray:
    """DEC's target distribution: responsibilities squared, over each cluster's total."""
    p = gamma**2 / gamma.sum(0, keepdims=True).clip(1e-12)
    return p / p.sum(1, keepdims=True)


def fit(
    adata: ad.AnnData, cfg: Config, n_components: int, seed: int, smoke: bool, variant: str
) -> mixvi.model.GMVAE:
    """One GMVAE with the dataset's settings; ``self_training`` runs its free epochs in rounds."""
    mixvi.settings.seed = seed
    mixvi.model.GMVAE.setup_anndata(adata)
    model = mixvi.model.GMVAE(
        adata,
        n_components=n_components,
        likelihood=cfg.likelihood,
        n_hidden=cfg.n_hidden,
        n_layers=cfg.n_layers,
        **cfg.gmvae_model,
    )
    epochs, anchored = (2, 1) if smoke else (cfg.gmvae_epochs, cfg.anchor_epochs)
    common = {
        "batch_size": cfg.batch_size,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "train_size": 1.0,
    }
    start = {
        "pretrain_epochs": 1 if smoke else cfg.pretrain_epochs,
        "init": "kmeans" if variant == "kmeans_start" else "umap",
        **cfg.gmvae_train,
    }
    pretraining = start["pretrain_epochs"]
    if variant != "self_training":
        model.train(max_epochs=pretraining + epochs, anchor_epochs=anchored, **start, **common)
        return model
    # stop after the anchored epochs, then anchor each round to DEC's target
    model.train(max_epochs=pretraining + anchored, anchor_epochs=anchored, **start, **common)
    free = epochs - anchored
    per_round = [free // ROUNDS + (r < free % ROUNDS) for r in range(ROUNDS)]
    for n in filter(None, per_round):
        target = dec_target(model.get_cluster_probabilities())
        model.train_anchored(n, responsibilities=target, **common)
    return model


def run_seed(name: str, seed: int, smoke: bool, variants: list[str]) -> dict[str, dict]:
    adata, cfg = load(name, seed, smoke)
    y = adata.obs[cfg.label_key].astype(str).to_numpy()
    k = len(np.unique(y))
    out: dict[str, dict] = {}
    if "kmeans_pca50" in variants:
        t = time.perf_counter()
        work = adata.copy()
        sc.pp.pca(work, n_comps=min(50, work.n_vars - 1, work.n_obs - 1), random_state=seed)
        pred = KMeans(k, n_init=10, random_state=seed).fit_predict(work.obsm["X_pca"])
        out["kmeans_pca50"] = {**clustering_scores(y, pred), "seconds": time.perf_counter() - t}
    fitted = [v for v in ("umap", "kmeans_start", "self_training", "merge_2k") if v in variants]
    if "kmeans_latent" in variants and "umap" not in fitted:
        fitted.insert(0, "umap")
    for variant in fitted:
        t = time.perf_counter()
        n_components = 2 * k if variant == "merge_2k" else k
        model = fit(adata.copy(), cfg, n_components, seed, smoke, variant)
        if variant == "merge_2k":
            pred = entropy_merge(model.get_cluster_probabilities(), k)
        else:
            pred = model.get_cluster_assignments()
        seconds = time.perf_counter() - t
        elbo = float(model.get_elbo())
        if variant in variants:
            out[variant] = {**clustering_scores(y, pred), "elbo": elbo, "seconds": seconds}
        if variant == "umap" and "kmeans_latent" in variants:
            t = time.perf_counter()
            latent = model.get_latent_representation()
            pred = KMeans(k, n_init=10, random_state=seed).fit_predict(latent)
            out["kmeans_latent"] = {
                **clustering_scores(y, pred),
                "seconds": seconds + time.perf_counter() - t,
            }
    return out


def table(summary: dict) -> str:
    lines = [
        "| dataset | variant | headline score | ELBO per cell | seconds | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for name, variants in summary.items():
        metric = HEADLINES[name]
        for variant, s in variants.items():
            elbo = f"{s['elbo'][0]:.1f} ± {s['elbo'][1]:.1f}" if "elbo" in s else ""
            lines.append(
                f"| {name} | {variant} | {metric.upper()} {s[metric][0]:.3f} ± {s[metric][1]:.3f} "
                f"| {elbo} | {s['seconds'][0]:.0f} | {s['n_seeds']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = seeded_parser(__doc__, "levers")
    parser.add_argument("--datasets", nargs="+", default=["sim", "pbmc"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args(argv)
    for name in args.datasets:
        if name != "sim" and name not in CONFIGS:
            parser.error(f"unknown dataset {name!r}; choose among sim, {', '.join(CONFIGS)}")
    meta = run_meta(command_line(argv), args.seeds, args.smoke)
    t0 = time.perf_counter()
    results: dict = {}
    for name in args.datasets:
        results[name] = {}
        for seed in args.seeds:
            results[name][seed] = run_seed(name, seed, args.smoke, args.variants)
            print(json.dumps({"dataset": name, "seed": seed, **results[name][seed]}), flush=True)
    meta["wall_seconds"] = time.perf_counter() - t0
    summary = {name: summarise_methods(per_seed, VARIANTS) for name, per_seed in results.items()}
    guided = [
        f"- {name}: labels guided a setting: {quality.tuned_with_labels(name)}"
        for name in args.datasets
        if quality.tuned_with_labels(name)
    ]
    finish(
        "The mixture start, and levers after it",
        meta,
        guided,
        table(summary),
        args.out,
        args.name,
        {"summary": summary, "per_seed": results},
    )
    return summary


if __name__ == "__main__":
    main()
