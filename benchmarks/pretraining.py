r"""Pretraining length: the GMVAE's UMAP + GMM start after more or fewer pretraining epochs.

For each seed, pretrains the GMVAE of ``quality.py``'s Fashion-MNIST config (a denoising
autoencoder, 20 % of pixels masked) once, keeps the latent means at every checkpoint epoch,
then starts the mixture from each with the GMVAE's own clustering
(:func:`mixvi.model.mixture_start`: UMAP, then a GaussianMixture) and scores that
start against the labels. Labels are used for scoring only.

The two halves can run on different machines. UMAP runs single-threaded (for
reproducible embeddings), about 4 minutes per start on 70,000 images whatever the machine,
so a GPU lease is best spent on the pretraining alone: ``--latents-only`` writes the
latents (float16, ``latents_seed{S}.npz``) to ``--out``, and ``--from-latents DIR`` clusters
them elsewhere.

Usage::

    python benchmarks/pretraining.py --seeds 0 1 2 --checkpoints 15 50 100 150 \\
        --accelerator gpu --compile --latents-only --out OUT     # on a GPU machine
    python benchmarks/pretraining.py --seeds 0 1 2 --checkpoints 15 50 100 150 --from-latents OUT
    python benchmarks/pretraining.py --seeds 0 --checkpoints 50 200 500 1000 --n-obs 20000
    python benchmarks/pretraining.py --smoke                    # 500 images, 2 epochs (CI)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS
from quality import CONFIGS
from speed import report

from mixvi.model._training_plan import LR_SCHEDULES

CONFIG = CONFIGS["fashion_mnist"]


def load(smoke: bool, n_obs: int | None = None):
    import mixvi

    adata = mixvi.data.fashion_mnist(split="all", n_obs=500 if smoke else n_obs)
    return adata, adata.obs[CONFIG.label_key].astype(str).to_numpy()


def pretrain(
    adata,
    seed: int,
    checkpoints: list[int],
    accelerator: str,
    compile_: bool,
    lr_schedule: str = "constant",
) -> dict[int, np.ndarray]:
    """Pretrain one GMVAE as ``GMVAE.train`` does; return the latent means at each checkpoint."""
    import torch
    from lightning.pytorch.callbacks import Callback

    import mixvi

    mixvi.settings.seed = seed
    mixvi.model.GMVAE.setup_anndata(adata)
    model = mixvi.model.GMVAE(
        adata,
        n_components=10,
        likelihood=CONFIG.likelihood,
        **{"n_hidden": CONFIG.n_hidden, "n_layers": CONFIG.n_layers, **CONFIG.gmvae_model},
    )
    x = torch.as_tensor(np.asarray(adata.X, dtype=np.float32))
    latents: dict[int, np.ndarray] = {}

    class Keep(Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if trainer.current_epoch + 1 not in checkpoints:
                return
            # encoded here, not by get_latent_representation: mid-training, scvi-tools refuses
            # an untrained model and, with the module in training mode, leaves the data on the
            # host. model.module is the uncompiled module, whatever the plan trains.
            module = model.module
            module.eval()
            device = next(module.parameters()).device
            with torch.inference_mode():
                means = [
                    module.inference(
                        rows.to(device),
                        batch_index=torch.zeros(len(rows), 1, dtype=torch.long, device=device),
                    )["qz"].loc.cpu()
                    for rows in x.split(4096)
                ]
            module.train()
            latents[trainer.current_epoch + 1] = torch.cat(means).numpy()

    # the GMVAE's pretraining phase (an autoencoder), run to the last checkpoint
    model.pretrain(
        max(checkpoints),
        "ae",
        batch_size=CONFIG.batch_size,
        accelerator=accelerator,
        train_size=1.0,
        plan_kwargs={"compile": compile_, "lr_schedule": lr_schedule},
        callbacks=[Keep()],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return latents


def score(z: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """The GMVAE's UMAP + GMM start on ``z``, scored against the labels."""
    from mixvi.metrics import clustering_scores
    from mixvi.model import mixture_start

    t = time.perf_counter()
    start = mixture_start(
        z.astype(np.float32),
        10,
        "umap",
        5,
        CONFIG.gmvae_train["start_kwargs"]["umap_neighbors"],
        seed,
    )
    scores = clustering_scores(labels, start.responsibilities.argmax(1))
    return {
        **{k: float(v) for k, v in scores.items()},
        "gmm_log_likelihood": float(start.log_likelihood),
        "seconds": time.perf_counter() - t,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| seed | pretraining epochs | start ACC | NMI | ARI | GMM log-lik. per cell |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['seed']} | {r['epochs']} | {r['acc']:.3f} | {r['nmi']:.3f} | {r['ari']:.3f} | {r['gmm_log_likelihood']:.2f} |"
        )
    for epochs in sorted({r["epochs"] for r in results}):
        rows = [r for r in results if r["epochs"] == epochs]
        mean = {k: statistics.fmean(r[k] for r in rows) for k in ("acc", "nmi", "ari")}
        lines.append(
            f"| mean of {len(rows)} | {epochs} | {mean['acc']:.3f} | {mean['nmi']:.3f} | {mean['ari']:.3f} | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[15, 50, 100, 150])
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument(
        "--compile", action="store_true", help="plan_kwargs={'compile': True} (pays on a GPU)"
    )
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default="constant",
        help="the pretraining's learning rate: constant, or cosine decay to 0 over the last checkpoint's epochs",
    )
    parser.add_argument(
        "--latents-only", action="store_true", help="pretrain and write the latents, do not cluster"
    )
    parser.add_argument(
        "--from-latents", type=Path, help="cluster the latents written by --latents-only"
    )
    parser.add_argument(
        "--n-obs",
        type=int,
        help="a class-stratified subset of this many images (all 70,000 by default): long "
        "pretraining on a CPU",
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.checkpoints = args.seeds[:1], [1, 2]
    adata, labels = load(args.smoke, args.n_obs)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        if args.from_latents is not None:
            saved = np.load(args.from_latents / f"latents_seed{seed}.npz")
            latents = {e: saved[f"e{e}"] for e in args.checkpoints}
        else:
            latents = pretrain(
                adata, seed, args.checkpoints, args.accelerator, args.compile, args.lr_schedule
            )
            np.savez(
                args.out / f"latents_seed{seed}.npz",
                **{f"e{e}": z.astype(np.float16) for e, z in latents.items()},
            )
        if args.latents_only:
            continue
        for epochs, z in sorted(latents.items()):
            results.append({"seed": seed, "epochs": epochs, **score(z, labels, seed)})
            print(f"seed {seed}, {epochs} epochs: start ACC {results[-1]['acc']:.3f}", flush=True)
    if results:
        name = args.name or ("pretraining_smoke" if args.smoke else "pretraining")
        notes = [
            f"- Fashion-MNIST ({adata.n_obs} images), quality.py's GMVAE config; the start is "
            f"UMAP ({CONFIG.gmvae_train['start_kwargs']['umap_neighbors']} neighbours) + a full GaussianMixture (5 restarts), "
            "UMAP and GMM seeded with the pretraining seed",
            f"- pretraining learning rate: {args.lr_schedule}"
            + (
                f" (cosine decay to 0 over {max(args.checkpoints)} epochs)"
                if args.lr_schedule == "cosine"
                else ""
            ),
        ]
        report(
            "GMVAE start after pretraining",
            notes,
            table(results),
            {},
            results,
            args.out / name,
            argv,
        )
    return results


if __name__ == "__main__":
    main()
