"""The GMVAE's network for counts, chosen on development data: weak-marker simulated counts.

Real UMI counts (pbmc3k, Kang) are test data: no setting may be chosen by their labels. This
script is where the count default was chosen instead, on ``sim_counts``: counts from
:func:`mixvi.data.simulate_counts` made to look like a hard PBMC sample (3,000 cells, 1,000
genes, 8 unequal types, 5 % marker genes with log fold changes of sd 1, about 1,000 counts
per cell with a log-scale sd of 0.5, NB inverse dispersion 2; a new simulation per seed).
Labels score the variants and chose among them: the table says so.

Every variant is ``GMVAE(n_components=8, likelihood="nb")`` on the counts with the library's
defaults (epochs included), except for the network the table names:

- ``deep``: two hidden layers of 256 (the default for every likelihood before);
- ``one_layer``: one hidden layer of 128 with dropout 0.1 (scVI's network);
- ``linear``: no hidden layer, linear encoder and decoder, a 10-D latent;
- ``linear_20``, ``linear_30``, ``linear_50``: the same with a latent of 20, 30 or 50
  dimensions (``--networks linear linear_20 linear_30 linear_50 --name count_latent``
  writes that comparison);
- ``linear_50_norm``: ``linear_50`` with the encoder reading each cell scaled to the median
  library size before ``log1p``, as PCA reads the data, where the others read ``log1p`` of
  the raw counts as scVI does; this is the count network (``--networks linear_50
  linear_50_norm --name count_input``).
- ``start_umap``, ``start_leiden``, ``start_pca``: the count network with the mixture
  start pinned to a Gaussian mixture on a UMAP of the pretrained latent, to Leiden at K on
  its neighbour graph, or to Leiden at K on the neighbour graph of PCA-50 of the encoder's
  input, the scanpy pipeline's clusters (``--networks start_umap start_leiden start_pca
  --name count_start``).
- ``vae_gmm``: the count network after a VAE pretraining, started by a Gaussian mixture on
  its latent; ``one_layer_vae_gmm``: the same from scVI's network (an scVI-like VAE, then
  the mixture); ``one_layer_50_norm``: one hidden layer of 128 to a 50-D latent from the
  scaled input, with the count default's PCA start.

``--data sim_condition`` runs the same on the weak-marker simulation under two conditions
that shift every gene (log factors of sd 0.5) and that are **not** registered: the case of a
user who clusters stimulated and control cells together, as Kang 2018 without its
condition is (test data, which chose nothing here). The table then also scores each
method's clusters against the condition (0 is best).

For each, the GMVAE's own clusters and Leiden at K on its latent; beside them, the scanpy
pipeline on the same cells (log-normalised values, PCA-50, then Leiden at K or k-means)
and k-means at K on scVI's latent (scvi-tools' defaults).

Usage::

    python benchmarks/count_settings.py --seeds 0 1 2 3 4 --networks deep one_layer linear
    python benchmarks/count_settings.py --seeds 0 1 2 3 4 --networks linear linear_20 \
        linear_30 linear_50 --name count_latent
    python benchmarks/count_settings.py --seeds 0 1 2 3 4 --networks linear_50 \
        linear_50_norm --name count_input
    python benchmarks/count_settings.py --seeds 0 1 2 3 4 --networks start_umap \
        start_leiden start_pca --name count_start
    python benchmarks/count_settings.py --data sim_condition --seeds 0 1 2 3 4 --networks \
        start_pca vae_gmm one_layer_vae_gmm one_layer_50_norm --name count_condition
    python benchmarks/count_settings.py --smoke        # 300 cells, 1 epoch (CI)
"""

from __future__ import annotations

import json
import time

import anndata as ad
import numpy as np
import scanpy as sc
from common import (
    command_line,
    finish,
    leiden_k,
    plus_minus,
    run_meta,
    scvi_latent,
    seeded_parser,
    summarise_methods,
)
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

import mixvi
from mixvi.metrics import clustering_scores

# each network pins its encoder input: log1p of the raw counts (as scVI reads them), or,
# for "_norm", each cell scaled to the median library size first (as PCA reads the data)
RAW = {"normalize_input": False}
ONE_LAYER = {"n_layers": 1, "n_hidden": 128, "dropout_rate": 0.1}  # scVI's network
NETWORKS = {
    "deep": {"n_layers": 2, "n_hidden": 256, "n_latent": 10, **RAW},
    "one_layer": {**ONE_LAYER, "n_latent": 10, **RAW},
    "linear": {"n_layers": 0, "n_latent": 10, **RAW},
    **{f"linear_{d}": {"n_layers": 0, "n_latent": d, **RAW} for d in (20, 30, 50)},
    "linear_50_norm": {"n_layers": 0, "n_latent": 50, "normalize_input": True},
}
# the count network with each mixture start pinned (``train``: arguments of GMVAE.train)
for _start in ("umap", "leiden", "pca"):
    NETWORKS[f"start_{_start}"] = {**NETWORKS["linear_50_norm"], "train": {"init": _start}}
# a VAE pretraining, whose latent a Gaussian mixture starts ("auto" after it is "gmm")
NETWORKS["vae_gmm"] = {**NETWORKS["linear_50_norm"], "train": {"pretraining": "vae"}}
NETWORKS["one_layer_vae_gmm"] = {**NETWORKS["one_layer"], "train": {"pretraining": "vae"}}
NETWORKS["one_layer_50_norm"] = {**ONE_LAYER, "n_latent": 50, "normalize_input": True}
BASELINES = ("pca_leiden", "kmeans_pca50", "scvi_kmeans")
METHODS = (
    *BASELINES,
    *(f"{net}{suffix}" for net in NETWORKS for suffix in ("", "_leiden")),
)
SIMULATION = {
    "n_genes": 1_000,
    "n_types": 8,
    "n_conditions": 1,
    "proportions": [30, 20, 15, 10, 10, 7, 5, 3],
    "marker_fraction": 0.05,
    "marker_lfc": 1.0,
    "library_mean": 1_000,
    "library_sd": 0.5,
    "dispersion": 2.0,
}
#: the development data: the count simulation alone, or under conditions left unregistered
DATA = {
    "sim_counts": SIMULATION,
    "sim_condition": {**SIMULATION, "n_conditions": 2, "condition_sd": 0.5},
}
GUIDED = {
    "sim_counts": (
        "sim_counts: labels guided a setting: the count defaults (no hidden layer, a 50-D "
        "latent, the encoder input scaled to the median library size) were chosen by "
        "comparing these networks' ARI and NMI on these seeds"
    ),
    "sim_condition": (
        "sim_condition: development data: labels score these networks to choose among them "
        "for counts with an unregistered condition"
    ),
}


def simulate(seed: int, smoke: bool, data: str = "sim_counts") -> ad.AnnData:
    """Counts in ``layers['counts']``, log-normalised values in ``X`` (as a scanpy user has)."""
    adata = mixvi.data.simulate_counts(n_cells=300 if smoke else 3_000, seed=seed, **DATA[data])
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    return adata


def run_seed(
    seed: int, smoke: bool, networks: list[str], data: str = "sim_counts"
) -> dict[str, dict]:
    adata = simulate(seed, smoke, data)
    y = adata.obs["cell_type"].astype(str).to_numpy()
    k = len(np.unique(y))
    condition = adata.obs["condition"].astype(str).to_numpy()

    def scores(pred: np.ndarray) -> dict:
        out = clustering_scores(y, pred)
        if len(np.unique(condition)) > 1:
            out["condition_ari"] = float(adjusted_rand_score(condition, pred))
        return out

    out: dict[str, dict] = {}
    t = time.perf_counter()
    sc.pp.pca(adata, n_comps=50, random_state=seed)
    pca_seconds = time.perf_counter() - t
    for method, fit in (
        ("pca_leiden", lambda: leiden_k(adata, "X_pca", k, seed)),
        (
            "kmeans_pca50",
            lambda: KMeans(k, n_init=10, random_state=seed).fit_predict(adata.obsm["X_pca"]),
        ),
    ):
        t = time.perf_counter()
        pred = fit()
        out[method] = {**scores(pred), "seconds": pca_seconds + time.perf_counter() - t}
    out["scvi_kmeans"] = scvi_kmeans(adata, k, seed, smoke, scores)
    for net in networks:
        t = time.perf_counter()
        mixvi.settings.seed = seed
        mixvi.model.GMVAE.setup_anndata(adata, layer="counts")
        network = dict(NETWORKS[net])
        train = network.pop("train", {})
        model = mixvi.model.GMVAE(adata, n_components=k, likelihood="nb", **network)
        model.train(
            **train,
            max_epochs=2 if smoke else None,
            pretrain_epochs=1 if smoke else None,
            anchor_epochs=0 if smoke else None,
            enable_progress_bar=False,
            enable_model_summary=False,
            train_size=1.0,
        )
        seconds = time.perf_counter() - t
        out[net] = {
            **scores(model.get_cluster_assignments()),
            "elbo": float(model.get_elbo()),
            "seconds": seconds,
        }
        adata.obsm["X_gmvae"] = model.get_latent_representation()
        t = time.perf_counter()
        pred = leiden_k(adata, "X_gmvae", k, seed)
        out[f"{net}_leiden"] = {
            **scores(pred),
            "seconds": seconds + time.perf_counter() - t,
        }
    return out


def scvi_kmeans(adata: ad.AnnData, k: int, seed: int, smoke: bool, scores) -> dict:
    """k-means at K on scVI's latent (scvi-tools' defaults, epochs included)."""
    t = time.perf_counter()
    latent = scvi_latent(adata, seed, max_epochs=1 if smoke else None)
    pred = KMeans(k, n_init=10, random_state=seed).fit_predict(latent)
    return {**scores(pred), "seconds": time.perf_counter() - t}


def table(summary: dict) -> str:
    condition = any("condition_ari" in s for s in summary.values())
    head = "| method | ARI | NMI |" + (" ARI to condition |" if condition else "")
    lines = [
        head + " ELBO per cell | seconds | seeds |",
        "|---|---|---|" + ("---|" if condition else "") + "---|---|---|",
    ]
    for method, s in summary.items():
        elbo = f"{s['elbo'][0]:.1f} ± {s['elbo'][1]:.1f}" if "elbo" in s else ""
        to_condition = f" {plus_minus(s['condition_ari'])} |" if condition else ""
        lines.append(
            f"| {method} | {plus_minus(s['ari'])} | {plus_minus(s['nmi'])} |{to_condition} "
            f"{elbo} | {s['seconds'][0]:.0f} | {s['n_seeds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = seeded_parser(__doc__, "count_settings")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--data", default="sim_counts", choices=list(DATA))
    args = parser.parse_args(argv)
    meta = run_meta(command_line(argv), args.seeds, args.smoke)
    t0 = time.perf_counter()
    per_seed: dict = {}
    for seed in args.seeds:
        per_seed[seed] = run_seed(seed, args.smoke, args.networks, args.data)
        print(json.dumps({"seed": seed, **per_seed[seed]}), flush=True)
    meta["wall_seconds"] = time.perf_counter() - t0
    summary = summarise_methods(per_seed, METHODS)
    finish(
        "The GMVAE's network for counts (development data)",
        meta,
        [
            f"- {GUIDED[args.data]}",
            "- GMVAE rows: its own clusters; `_leiden` rows: Leiden at K on its latent",
        ],
        table(summary),
        args.out,
        args.name,
        {"summary": summary, "per_seed": per_seed},
    )
    return summary


if __name__ == "__main__":
    main()
