"""Run by tests/test_ddp.py in a subprocess: Lightning's DDP relaunches this file per rank."""

import json
import os
import sys

import scanpy as sc

import mixvi

mode, epochs, batch_size, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
adata = sc.datasets.pbmc68k_reduced()
mixvi.settings.seed = 0
mixvi.model.VAE.setup_anndata(adata)
model = mixvi.model.VAE(adata, n_hidden=32)
devices = (
    {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    if mode == "ddp"
    else {"accelerator": "cpu", "devices": 1}
)
model.train(
    max_epochs=epochs,
    batch_size=batch_size,
    train_size=1.0,
    enable_progress_bar=False,
    enable_model_summary=False,
    **devices,
)
if int(os.environ.get("LOCAL_RANK", "0")) == 0:
    with open(out, "w") as handle:
        json.dump(
            {
                "elbo": float(model.get_elbo()),
                "loader": model._resolve_loader("auto", "cpu", devices["devices"], devices),
            },
            handle,
        )
