"""Run by tests/test_ddp.py in a subprocess: Lightning's DDP relaunches this file per rank.

Each rank writes what it saw to ``OUT.rankN.json``: the world size and its rank as torch
reports them, the cells of its first epoch (found by their rows, which are unique in
pbmc68k_reduced), a checksum of its parameters after training, and the ELBO.
"""

import hashlib
import json
import os
import sys

import numpy as np
import scanpy as sc
import torch
from lightning.pytorch.callbacks import Callback
from scvi import REGISTRY_KEYS

import mixvi

mode, epochs, batch_size, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
adata = sc.datasets.pbmc68k_reduced()
# a cell's row, rounded, names it: the test checks the rows are unique
row_ids = {np.round(row, 4).tobytes(): i for i, row in enumerate(np.asarray(adata.X))}


class SeenCells(Callback):
    """Records the cells of every batch of the first epoch, and the distributed setting."""

    def __init__(self) -> None:
        self.cells: list[int] = []
        self.world_size, self.rank = 1, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.world_size = torch.distributed.get_world_size()
            self.rank = torch.distributed.get_rank()
        if trainer.current_epoch == 0:
            x = batch[REGISTRY_KEYS.X_KEY].cpu().numpy()
            self.cells += [row_ids[np.round(row, 4).tobytes()] for row in x]


mixvi.settings.seed = 0
mixvi.model.VAE.setup_anndata(adata)
model = mixvi.model.VAE(adata, n_hidden=32)
devices = (
    {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    if mode == "ddp"
    else {"accelerator": "cpu", "devices": 1}
)
seen = SeenCells()
model.train(
    max_epochs=epochs,
    batch_size=batch_size,
    train_size=1.0,
    enable_progress_bar=False,
    enable_model_summary=False,
    callbacks=[seen],
    **devices,
)
# parameters only: DDP averages gradients, so these match across ranks, while batch-norm
# running statistics are buffers that each rank updates from its own cells in the last step
weights = hashlib.sha256()
for name, tensor in sorted(model.module.named_parameters()):
    weights.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
with open(f"{out}.rank{seen.rank}.json", "w") as handle:
    json.dump(
        {
            "world_size": seen.world_size,
            "rank": seen.rank,
            "pid": os.getpid(),
            "cells": seen.cells,
            "n_cells": adata.n_obs,
            "unique_rows": len(row_ids),
            "weights": weights.hexdigest(),
            "elbo": float(model.get_elbo()),
            "loader": model._resolve_loader("auto", "cpu", devices["devices"], devices),
        },
        handle,
    )
