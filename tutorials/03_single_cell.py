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
gmvae.train(max_epochs=epochs, pretrain_epochs=epochs // 2, enable_progress_bar=False)
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
# `chosen` marks the K whose clusters lie furthest apart: a Gaussian mixture per K clusters a 2-D UMAP of a VAE pretraining's latent, and the K with the best worse silhouette, in the UMAP and in the latent, wins (no labels are used; see the user guide). Each K also gets a GMVAE trained on the same 90 % of the cells: the ELBO of the held-out 10 % and the collapsed components are listed next to it. pbmc68k_reduced's `bulk_labels` name 10 types, several of which overlap in expression.

# %%
table = mixvi.model.GMVAE.compare_n_components(
    adata, [4, 8, 12] if not SMALL else [2, 4],
    model_kwargs={"likelihood": "normal", "n_hidden": 128},
    train_kwargs={"max_epochs": 2 * (epochs // 3), "pretrain_epochs": epochs // 3, "enable_progress_bar": False},
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

# %% [markdown]
# ## Part 3: clusters free of the condition
#
# A GMVAE set up with a `condition_key` clusters by what the condition does not explain. We simulate counts with `mixvi.data.simulate_counts`: 5 cell types in unequal proportions (35/25/20/12/8 %) under 3 conditions, each of which multiplies every gene by its own log-normal factor, as a batch that touches the whole transcriptome does. Next to it: scvi-tools' SCVI with the condition as `batch_key`, then Leiden with the resolution chosen to give 5 clusters (labels are used only to score).

# %%
import scvi
from sklearn.metrics import adjusted_rand_score

counts = mixvi.data.simulate_counts(n_cells=600 if SMALL else 3_000, n_genes=500, n_types=5, n_conditions=3,
                                    proportions=[35, 25, 20, 12, 8], seed=0)
count_epochs = 5 if SMALL else 120

mixvi.model.GMVAE.setup_anndata(counts, layer="counts", condition_key="condition")
conditional = mixvi.model.GMVAE(counts, n_components=5, likelihood="nb")
conditional.train(max_epochs=count_epochs, enable_progress_bar=False)
conditional.write_results(counts)            # obsm["X_gmvae"], obs["gmvae_cluster"]

scvi.settings.seed = 0
scvi.model.SCVI.setup_anndata(counts, layer="counts", batch_key="condition")
scvi_model = scvi.model.SCVI(counts, n_latent=10)
scvi_model.train(max_epochs=count_epochs, enable_progress_bar=False)
counts.obsm["X_scvi"] = scvi_model.get_latent_representation()
sc.pp.neighbors(counts, use_rep="X_scvi")
for resolution in np.geomspace(0.02, 2, 25):  # the smallest resolution that gives 5 clusters
    sc.tl.leiden(counts, resolution=resolution, key_added="scvi_leiden", flavor="igraph", n_iterations=2)
    if counts.obs["scvi_leiden"].nunique() >= 5:
        break

pd.DataFrame({
    method: {"ARI with cell type": adjusted_rand_score(counts.obs["cell_type"], counts.obs[key]),
             "ARI with condition": adjusted_rand_score(counts.obs["condition"], counts.obs[key]),
             "clusters": counts.obs[key].nunique()}
    for method, key in [("conditional GMVAE", "gmvae_cluster"), ("scVI + Leiden", "scvi_leiden")]
}).T.round(3)

# %%
sc.pp.neighbors(counts, use_rep="X_gmvae")
sc.tl.umap(counts)
sc.pl.umap(counts, color=["cell_type", "condition", "gmvae_cluster"], wspace=0.4)
pd.crosstab(counts.obs["cell_type"], counts.obs["gmvae_cluster"])
