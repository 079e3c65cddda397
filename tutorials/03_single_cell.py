# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Single-cell data with scanpy: VAE, GMVAE and a CVAE
#
# scanpy's `pbmc68k_reduced` holds 700 PBMCs with scaled expression of 765 genes and ten reference cell types (`bulk_labels`). Scaled values call for the normal likelihood; with raw counts, pass `layer="counts"` and `likelihood="nb"`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc

import mixvi

SMALL = os.environ.get("MIXVI_TUTORIAL_SMALL") == "1"  # CI runs a subset with a few epochs
mixvi.settings.seed = 0

# %%
adata = mixvi.data.pbmc68k_reduced()
adata

# %% [markdown]
# ## Part 1: VAE and GMVAE next to PCA
#
# `setup_anndata`, train, write the latent to `obsm`, then scanpy as usual.

# %%
epochs = 6 if SMALL else 150
mixvi.model.VAE.setup_anndata(adata)
vae = mixvi.model.VAE(adata, likelihood="normal")
vae.train(max_epochs=epochs, enable_progress_bar=False)
vae.write_results(adata)                      # obsm["X_vae"]

mixvi.model.GMVAE.setup_anndata(adata)
gmvae = mixvi.model.GMVAE(adata, n_components=10, likelihood="normal", n_hidden=128)
gmvae.train(max_epochs=epochs // 2, pretrain_epochs=epochs // 2, enable_progress_bar=False)
gmvae.write_results(adata)                    # obsm["X_gmvae"], obs["gmvae_cluster"]

# %%
from mixvi.metrics import clustering_scores

rows = {}
for rep in ["X_pca", "X_vae", "X_gmvae"]:
    sc.pp.neighbors(adata, use_rep=rep, key_added=rep)
    sc.tl.leiden(adata, neighbors_key=rep, key_added=f"leiden_{rep}", flavor="igraph", n_iterations=2)
    rows[f"{rep} + Leiden"] = clustering_scores(adata.obs["bulk_labels"], adata.obs[f"leiden_{rep}"])
rows["GMVAE clusters"] = clustering_scores(adata.obs["bulk_labels"], adata.obs["gmvae_cluster"])
pd.DataFrame(rows).T.round(3)

# %%
sc.tl.umap(adata, neighbors_key="X_vae")
sc.pl.umap(adata, color=["bulk_labels", "leiden_X_vae", "gmvae_cluster"], wspace=0.5)

# %% [markdown]
# ## Choosing K
#
# Train one GMVAE per candidate K on the same 90 % of the cells and compare the ELBO of the held-out 10 %; collapsed components are listed too.

# %%
table = mixvi.model.GMVAE.compare_n_components(
    adata, [4, 8, 12] if not SMALL else [2, 4],
    model_kwargs={"likelihood": "normal", "n_hidden": 128},
    train_kwargs={"max_epochs": epochs // 3, "pretrain_epochs": epochs // 3, "enable_progress_bar": False},
)
table

# %% [markdown]
# ## Part 2: a CVAE with a condition, and counterfactual decoding
#
# `pbmc68k_reduced` has a single condition, so we **simulate** one: half of the cells are "stimulated" by adding +2 (in scaled units) to 20 genes. A CVAE conditioned on `condition` should (a) mix the two conditions in its latent, while PCA separates them, and (b) decode control cells as if stimulated, recovering the shift in exactly those genes.

# %%
rng = np.random.default_rng(0)
sim = adata.copy()
sim.obs["condition"] = pd.Categorical(np.where(rng.random(sim.n_obs) < 0.5, "ctrl", "stim"))
response_genes = sim.var_names[rng.choice(sim.n_vars, 20, replace=False)]
stim = (sim.obs["condition"] == "stim").to_numpy()
sim.X[np.ix_(stim, sim.var_names.get_indexer(response_genes))] += 2.0

mixvi.model.CVAE.setup_anndata(sim, condition_key="condition")
cvae = mixvi.model.CVAE(sim, likelihood="normal")
cvae.train(max_epochs=epochs, enable_progress_bar=False)
cvae.write_results(sim)                      # obsm["X_cvae"]

sc.pp.pca(sim)
for rep in ["X_pca", "X_cvae"]:
    sc.pp.neighbors(sim, use_rep=rep)
    sc.tl.umap(sim)
    sc.pl.umap(sim, color=["condition", "bulk_labels"], title=[f"{rep}: condition", f"{rep}: cell type"], wspace=0.5)

# %%
ctrl_idx = np.flatnonzero(~stim)
as_ctrl = cvae.decode_counterfactual("ctrl", indices=ctrl_idx)
as_stim = cvae.decode_counterfactual("stim", indices=ctrl_idx)
shift = pd.Series((as_stim - as_ctrl).mean(0), index=sim.var_names)
is_response = sim.var_names.isin(response_genes)
fig, ax = plt.subplots(figsize=(5, 3))
ax.hist([shift[~is_response], shift[is_response]], bins=40, label=["other genes", "simulated response genes"], stacked=True)
ax.set_xlabel("counterfactual shift (stim − ctrl), mean over control cells")
ax.legend();
print(f"mean shift: response genes {shift[is_response].mean():.2f} (simulated 2.0), other genes {shift[~is_response].mean():.2f}")
