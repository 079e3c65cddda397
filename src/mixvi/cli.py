"""Command line: ``mixvi train`` for batch jobs.

Example
-------
``mixvi train --model cvae --data pbmc.h5ad --layer counts --condition-key condition
--likelihood nb --out results/``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger("mixvi")

MODELS = ("ae", "vae", "cvae", "gmvae")
#: named datasets for --dataset: (layer, label key); pbmc3k's counts keep 2,000 seurat_v3 genes
DATASETS = {"pbmc68k_reduced": (None, "bulk_labels"), "pbmc3k": ("counts", "cell_type")}
HVG_GENES = 2_000


def _n_components(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an integer or auto, not {value!r}") from None


def _umap_cells(value: str) -> int:
    # argparse's own error, before any training: GMVAE.train would raise only after loading
    try:
        cells = int(value)
    except ValueError:
        cells = 0
    if cells < 2:
        raise argparse.ArgumentTypeError(f"an integer >= 2, not {value!r}")
    return cells


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixvi", description="Autoencoder-family models on AnnData."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a model on an .h5ad and write latents, clusters, UMAP and metrics",
        description=(
            "Read an .h5ad (or a named dataset: scanpy's bundled pbmc68k_reduced, the default, or "
            "10x PBMC 3k's raw counts), train a model, "
            "and write DIR/adata.h5ad (latent in obsm, Leiden clusters in obs), DIR/model/, "
            "DIR/umap.png and DIR/metrics.json."
        ),
    )
    train.add_argument(
        "--model", choices=MODELS, default="vae", help="model to train (default: vae)"
    )
    data = train.add_mutually_exclusive_group()
    data.add_argument("--data", type=Path, help=".h5ad file")
    data.add_argument(
        "--dataset",
        choices=tuple(DATASETS),
        help="a named dataset instead of --data: pbmc68k_reduced (scanpy's 700 cells of scaled "
        "values, offline; the default) or pbmc3k (10x PBMC 3k, raw counts in layer 'counts', "
        f"the {HVG_GENES:,} seurat_v3 highly variable genes, labels in obs['cell_type']; fetched "
        "once into mixvi's cache)",
    )
    train.add_argument("--out", type=Path, required=True, help="output directory (created)")
    train.add_argument("--layer", help="use adata.layers[LAYER] instead of X (e.g. raw counts)")
    train.add_argument("--condition-key", help="obs column of the condition (required for cvae)")
    train.add_argument(
        "--label-key", help="obs column of reference labels for NMI/ARI and the UMAP colours"
    )
    train.add_argument(
        "--likelihood",
        default="auto",
        choices=("auto", "normal", "bernoulli", "nb", "zinb", "poisson"),
        help="observation model; auto picks nb for counts, bernoulli for [0, 1], else normal",
    )
    train.add_argument(
        "--epochs",
        type=int,
        help="training epochs; for gmvae, of all its phases together (default: scvi-tools' heuristic)",
    )
    train.add_argument(
        "--n-latent",
        type=int,
        help="latent dimension (default: the model's; 10, or 50 for gmvae on counts without a condition)",
    )
    train.add_argument(
        "--n-hidden", type=int, help="width of the hidden layers (default: the model's)"
    )
    train.add_argument(
        "--n-layers", type=int, help="hidden layers of encoder and decoder (default: the model's)"
    )
    train.add_argument(
        "--n-components",
        type=_n_components,
        default=10,
        help="gmvae: mixture components K, or auto: the K whose clusters are best separated "
        "among --k-range "
        "(GMVAE.compare_n_components, no labels) (default: 10)",
    )
    train.add_argument(
        "--k-range",
        type=int,
        nargs=2,
        default=(2, 20),
        metavar=("MIN", "MAX"),
        help="gmvae with --n-components auto: the candidate Ks, MIN to MAX (default: 2 20)",
    )
    train.add_argument(
        "--init",
        choices=("auto", "umap", "leiden", "pca", "gmm", "kmeans"),
        default="auto",
        help="gmvae: how the mixture starts (default: auto: gmm after a VAE pretraining; after an "
        "AE pretraining, pca on counts with no condition and umap otherwise; leiden: Leiden on "
        "the latent; pca: Leiden on PCA-50 of the encoder's input; kmeans: k-means on the "
        "latent)",
    )
    train.add_argument(
        "--umap-cells",
        type=_umap_cells,
        help="gmvae with the umap start: fit its UMAP on at most this many cells, drawn at random, "
        "and place the others by their nearest fitted cells; bounds the start's time on large "
        "data (default: all cells)",
    )
    train.add_argument(
        "--pretrain-epochs",
        type=int,
        help="gmvae: pretraining epochs, part of --epochs (default: a third of them)",
    )
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default)")
    train.add_argument(
        "--compile",
        choices=("off", "on", "cudagraphs"),
        default="off",
        help="compile the training step with torch.compile; cudagraphs also replays it as CUDA graphs. "
        "Pays on long GPU runs; compiling takes seconds to a minute (default: off)",
    )
    train.add_argument(
        "--resolution",
        type=float,
        default=1.0,
        help="resolution of Leiden on the model's latent (the baselines' Leiden is bisected "
        "to the K of their k-means instead)",
    )
    train.add_argument(
        "--scvi-baseline",
        action="store_true",
        help="with labels and a count likelihood: also train scvi-tools' SCVI (its defaults, "
        "the same epochs) and score Leiden on its latent, as a baseline on the same cells",
    )
    train.add_argument(
        "--overwrite", action="store_true", help="replace an existing model directory"
    )
    return parser


def run_train(args: argparse.Namespace) -> dict:
    """Run ``mixvi train`` with parsed arguments; returns the metrics written."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import scanpy as sc

    import mixvi
    from mixvi._paths import output_path
    from mixvi.metrics import clustering_scores
    from mixvi.model import infer_likelihood
    from mixvi.module import COUNT_LIKELIHOODS

    mixvi.settings.seed = args.seed
    # checked before training, so that a bad output directory does not cost a training run
    paths = {
        name: output_path(args.out, name)
        for name in ("umap.png", "model", "adata.h5ad", "metrics.json")
    }
    if paths["model"].exists() and not args.overwrite:
        raise FileExistsError(f"{paths['model']} exists; pass --overwrite to replace it.")
    if args.data is None:
        name = args.dataset or "pbmc68k_reduced"
        adata = getattr(mixvi.data, name)()
        layer, default_label_key = DATASETS[name]
        if name == "pbmc3k":
            sc.pp.highly_variable_genes(
                adata, n_top_genes=HVG_GENES, flavor="seurat_v3", layer=layer, subset=True
            )
        args.layer = args.layer or layer
        label_key = args.label_key or default_label_key
        source = name
    else:
        if not args.data.is_file():
            raise FileNotFoundError(f"--data {args.data}: no such file.")
        adata = sc.read_h5ad(args.data)
        label_key = args.label_key
        source = str(args.data)
    if label_key is not None and label_key not in adata.obs:
        raise KeyError(f"--label-key {label_key!r} is not a column of adata.obs.")
    if args.model == "cvae" and args.condition_key is None:
        raise ValueError("--model cvae needs --condition-key.")
    likelihood = (
        infer_likelihood(adata, args.layer) if args.likelihood == "auto" else args.likelihood
    )
    if args.scvi_baseline and (label_key is None or likelihood not in COUNT_LIKELIHOODS):
        raise ValueError(
            "--scvi-baseline needs labels (--label-key) and a count likelihood (nb, zinb, "
            f"poisson); this run has label key {label_key!r} and likelihood {likelihood!r}."
        )
    logger.info(
        "%s: %d obs × %d vars, likelihood=%s", source, adata.n_obs, adata.n_vars, likelihood
    )

    cls = {
        "ae": mixvi.model.AE,
        "vae": mixvi.model.VAE,
        "cvae": mixvi.model.CVAE,
        "gmvae": mixvi.model.GMVAE,
    }[args.model]
    setup = {"layer": args.layer}
    if args.model in ("cvae", "gmvae") and args.condition_key is not None:
        setup["condition_key"] = args.condition_key
    cls.setup_anndata(adata, **setup)
    model_kwargs, train_kwargs = {"likelihood": likelihood}, {}
    for name in ("n_latent", "n_hidden", "n_layers"):
        if getattr(args, name) is not None:
            model_kwargs[name] = getattr(args, name)
    choice = None
    if args.model == "gmvae":
        train_kwargs["pretrain_epochs"] = args.pretrain_epochs
        train_kwargs["init"] = args.init
        if args.umap_cells is not None:
            train_kwargs["start_kwargs"] = {"umap_cells": args.umap_cells}
        if args.n_components == "auto":
            choice = choose_n_components(adata, args, model_kwargs)
        model_kwargs["n_components"] = args.n_components if choice is None else choice["chosen"]
    if args.compile != "off":
        mode = "reduce-overhead" if args.compile == "cudagraphs" else "default"
        train_kwargs["plan_kwargs"] = {"compile": True, "compile_kwargs": {"mode": mode}}
    model = cls(adata, **model_kwargs)
    start = time.perf_counter()
    model.train(
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        accelerator=args.accelerator,
        **train_kwargs,
    )
    train_seconds = time.perf_counter() - start

    model.write_results(adata)
    key = model._latent_key
    sc.pp.neighbors(adata, use_rep=key, random_state=args.seed)
    cluster_key = f"{args.model}_leiden"
    sc.tl.leiden(
        adata,
        resolution=args.resolution,
        key_added=cluster_key,
        random_state=args.seed,
        flavor="igraph",
        n_iterations=2,
        directed=False,
    )
    sc.tl.umap(adata, random_state=args.seed)

    metrics: dict = {
        "model": args.model,
        "data": source,
        "n_obs": int(adata.n_obs),
        "n_vars": int(adata.n_vars),
        "likelihood": likelihood,
        "epochs": int(model.history["train_loss"].shape[0]),
        "train_seconds": round(train_seconds, 2),
        "n_clusters": int(adata.obs[cluster_key].nunique()),
    }
    if args.model == "ae":
        metrics["reconstruction_error"] = model.get_reconstruction_error()
    else:
        metrics["elbo"] = float(model.get_elbo())
    if label_key is not None:
        labels = adata.obs[label_key].to_numpy()
        metrics["label_key"] = label_key
        metrics.update(
            {f"leiden_{k}": v for k, v in clustering_scores(labels, adata.obs[cluster_key]).items()}
        )
        if args.model == "gmvae":
            scores = clustering_scores(labels, adata.obs["gmvae_cluster"])
            metrics.update({f"gmvae_{k}": v for k, v in scores.items()})
        # the standard pipelines on the same cells, so that the model's clusters have a yardstick
        # k-means at the GMVAE's K, else at the number of labelled types
        k = model_kwargs.get("n_components", len(set(labels)))
        for name, clusters in baselines(adata, args, likelihood, k, metrics["epochs"]).items():
            metrics[f"{name}_n_clusters"] = int(clusters.nunique())
            metrics.update(
                {f"{name}_{key}": v for key, v in clustering_scores(labels, clusters).items()}
            )
    if args.model == "gmvae":
        metrics["n_components"] = model_kwargs["n_components"]
        if choice is not None:
            metrics["n_components_choice"] = choice
        metrics["init"] = model.start_init_  # what "auto" resolved to
        metrics["umap_cells"] = args.umap_cells
        metrics["collapsed_components"] = model.collapsed_components()
    metrics = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in metrics.items()}

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    colors = [c for c in (label_key, cluster_key) if c is not None]
    if args.model == "gmvae":
        colors.append("gmvae_cluster")
    fig = sc.pl.umap(adata, color=colors, show=False, return_fig=True, wspace=0.6)
    fig.savefig(paths["umap.png"], dpi=120, bbox_inches="tight")
    model.save(paths["model"], overwrite=args.overwrite, save_anndata=False)
    adata.write_h5ad(paths["adata.h5ad"])
    paths["metrics.json"].write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def choose_n_components(adata, args: argparse.Namespace, model_kwargs: dict) -> dict:
    """K for ``--n-components auto``: :meth:`GMVAE.compare_n_components`'s choice, no labels."""
    import mixvi
    from mixvi.model._n_components import chosen_k, k_range_candidates

    low, high = args.k_range
    candidates = k_range_candidates(low, high, adata.n_obs, f"--k-range {low} {high}")
    table = mixvi.model.GMVAE.compare_n_components(
        adata,
        candidates,
        seed=args.seed,
        model_kwargs=model_kwargs,
        train_kwargs={
            "pretrain_epochs": args.pretrain_epochs or (args.epochs // 3 if args.epochs else None),
            "batch_size": args.batch_size,
            "lr": args.lr,
            "accelerator": args.accelerator,
        },
        fit_models=False,
    )
    chosen = chosen_k(table)
    logger.info(
        "--n-components auto: chose K=%d of %d-%d by cluster separation",
        chosen,
        low,
        candidates[-1],
    )
    return {
        "chosen": chosen,
        "criterion": "highest worse silhouette (in a 2-D UMAP and in the latent of a VAE "
        "pretraining, each relative to its best) of a Gaussian mixture's clusters on the UMAP "
        "(GMVAE.compare_n_components)",
        # K = 1 has no silhouette: null in the JSON, not NaN, which strict parsers refuse
        "score": {int(k): (None if v != v else float(v)) for k, v in table["score"].items()},
    }


def baselines(adata, args: argparse.Namespace, likelihood: str, k: int, epochs: int) -> dict:
    """Clusters of the standard pipelines on ``adata``'s cells, by name, K = ``k`` each.

    ``pca_leiden`` and ``pca_kmeans``: scanpy's pipeline, log-normalised counts (or the
    values as they are) → PCA-50 → a kNN graph and Leiden, or k-means. With
    ``--scvi-baseline``, ``scvi_leiden``: Leiden on the latent of scvi-tools' SCVI, trained
    with its defaults for ``epochs`` epochs on the same counts. Leiden's resolution is
    bisected until it gives K clusters, as the benchmarks do, so that every method is
    scored at the same number of clusters as the model's.
    """
    import anndata as ad
    import pandas as pd
    import scanpy as sc
    from sklearn.cluster import KMeans

    from mixvi.model import leiden_clusters
    from mixvi.module import COUNT_LIKELIHOODS

    def leiden(data: ad.AnnData, use_rep: str):
        labels = leiden_clusters(data.obsm[use_rep], k, seed=args.seed, exact=False)
        return pd.Series(pd.Categorical(labels), index=adata.obs_names)

    matrix = adata.X if args.layer is None else adata.layers[args.layer]
    work = ad.AnnData(matrix.copy())
    if likelihood in COUNT_LIKELIHOODS:
        sc.pp.normalize_total(work, target_sum=1e4)
        sc.pp.log1p(work)
    n_comps = int(min(50, work.n_obs - 1, work.n_vars - 1))
    sc.pp.pca(work, n_comps=n_comps, random_state=args.seed)
    kmeans = KMeans(k, n_init=10, random_state=args.seed).fit_predict(work.obsm["X_pca"])
    out = {
        "pca_leiden": leiden(work, "X_pca"),
        "pca_kmeans": pd.Series(pd.Categorical(kmeans), index=adata.obs_names),
    }
    if args.scvi_baseline:
        import scvi

        counts = ad.AnnData(matrix.copy())
        scvi.settings.seed = args.seed
        scvi.model.SCVI.setup_anndata(counts)
        model = scvi.model.SCVI(counts)
        model.train(
            max_epochs=epochs,
            batch_size=args.batch_size,
            accelerator=args.accelerator,
            enable_progress_bar=False,
        )
        counts.obsm["X_scvi"] = model.get_latent_representation()
        out["scvi_leiden"] = leiden(counts, "X_scvi")
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mixvi`` console script."""
    args = _parser().parse_args(argv)
    try:
        metrics = run_train(args)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError) as err:
        print(f"mixvi: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    out = args.out.resolve()
    latent = {"ae": "X_ae", "vae": "X_vae", "cvae": "X_cvae", "gmvae": "X_gmvae"}[args.model]
    extra = ', obs["gmvae_cluster"], obsm["gmvae_probabilities"]' if args.model == "gmvae" else ""
    print("wrote:")
    print(f'  {out / "adata.h5ad"}   (obsm["{latent}"]{extra}, obs["{args.model}_leiden"])')
    print(f"  {out / 'umap.png'}     (UMAP of the latent, coloured by labels and clusters)")
    print(f"  {out / 'metrics.json'} (ELBO, cluster ACC/NMI/ARI, baselines on the same cells)")
    print(
        f"  {out / 'model'}/       (the trained model: mixvi.model.{args.model.upper()}.load(...))"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
