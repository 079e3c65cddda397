# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Single-cell counts with scanpy: VAE, GMVAE and a CVAE
#
# 10x Genomics' PBMC 3k: 2,700 blood cells of raw UMI counts with eight reference cell types in `obs["cell_type"]` (`mixvi.data.pbmc3k()` fetches it once into `~/.cache/mixvi`). The models read the raw counts (`layer="counts"`, `likelihood="nb"`); scanpy's pipeline reads log-normalised values in `X`, as usual.

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
adata = mixvi.data.pbmc3k()                   # counts in X and layers["counts"]
if SMALL:
    adata = adata[np.random.default_rng(0).choice(adata.n_obs, 800, replace=False)].copy()
sc.pp.highly_variable_genes(adata, n_top_genes=2_000, flavor="seurat_v3", layer="counts", subset=True)
sc.pp.normalize_total(adata, target_sum=1e4)  # X: log-normalised, for PCA; the counts stay in the layer
sc.pp.log1p(adata)
sc.pp.pca(adata, n_comps=50)
adata

# %% [markdown]
# ## Part 1: VAE and GMVAE next to PCA
#
# `setup_anndata` on the counts, train, write the latent to `obsm`, then scanpy as usual. Every setting is the library's default for counts, epochs included (scvi-tools' rule of thumb for the number of cells); K is the number of reference types here, and the next section chooses it without labels.

# %%
K = adata.obs["cell_type"].nunique()
epochs = {"max_epochs": 6} if SMALL else {}

mixvi.model.VAE.setup_anndata(adata, layer="counts")
vae = mixvi.model.VAE(adata, likelihood="nb")
vae.train(**epochs, enable_progress_bar=False)
vae.write_results(adata)                      # obsm["X_vae"]

mixvi.model.GMVAE.setup_anndata(adata, layer="counts")
gmvae = mixvi.model.GMVAE(adata, n_components=K, likelihood="nb")
gmvae.train(**epochs, enable_progress_bar=False)
gmvae.write_results(adata)                    # obsm["X_gmvae"], obs["gmvae_cluster"]
gmvae

# %% [markdown]
# Leiden's resolution sets the number of clusters; `mixvi.model.leiden_clusters` bisects it until there are K, so that every method below gives K clusters of the same cells.

# %%
from mixvi.metrics import clustering_scores

rows = {}
for rep in ["X_pca", "X_vae", "X_gmvae"]:
    adata.obs[f"leiden_{rep}"] = pd.Categorical(mixvi.model.leiden_clusters(adata.obsm[rep], K, exact=False))
    rows[f"{rep} + Leiden"] = clustering_scores(adata.obs["cell_type"], adata.obs[f"leiden_{rep}"])
rows["GMVAE clusters"] = clustering_scores(adata.obs["cell_type"], adata.obs["gmvae_cluster"])
pd.DataFrame(rows).T.round(3)

# %%
sc.pp.neighbors(adata, use_rep="X_gmvae")
sc.tl.umap(adata)
sc.pl.umap(adata, color=["cell_type", "gmvae_cluster", "leiden_X_pca"], wspace=0.5)
pd.crosstab(adata.obs["cell_type"], adata.obs["gmvae_cluster"])

# %% [markdown]
# ## Choosing K
#
# `chosen` marks the K whose clusters lie furthest apart: a Gaussian mixture per K clusters a 2-D UMAP of a VAE pretraining's latent, and the K with the best worse silhouette, in the UMAP and in the latent, wins. No labels are used. With `fit_models=False` the table costs one pretraining; with `True` each K also gets a GMVAE whose held-out ELBO is listed. The criterion is not always right, and on PBMC 3k it is wrong: it chooses a K far below the 8 reference types, because the best separated split of blood cells is a coarse one (the benchmark's `gmvae_auto_k` rows give its choice on five seeds). Read the user guide's "Choosing K" before you trust it, and set K from what you know of the tissue where you can.

# %%
table = mixvi.model.GMVAE.compare_n_components(
    adata, range(2, 13) if not SMALL else [2, 4],
    model_kwargs={"likelihood": "nb"},
    fit_models=False,
    selection_epochs=3 if SMALL else None,
    train_kwargs={"enable_progress_bar": False},
)
table

# %% [markdown]
# ## Part 2: a CVAE with a condition, and counterfactual decoding
#
# PBMC 3k has a single condition, so we **simulate** one: half of the cells are "stimulated" by drawing, for 20 genes, four times their counts (a Poisson draw with mean 4 × the observed count). A CVAE conditioned on `condition` should (a) mix the two conditions in its latent, while PCA separates them, and (b) decode control cells as if stimulated, recovering a fourfold change (log2 = 2) in exactly those genes.

# %%
rng = np.random.default_rng(0)
sim = adata.copy()
sim.obs["condition"] = pd.Categorical(np.where(rng.random(sim.n_obs) < 0.5, "ctrl", "stim"))
mean_counts = np.asarray(sim.layers["counts"].mean(axis=0)).ravel()
response_genes = sim.var_names[rng.choice(np.flatnonzero(mean_counts > 0.5), 20, replace=False)]
stim = (sim.obs["condition"] == "stim").to_numpy()
matrix = sim.layers["counts"].toarray()
block = np.ix_(stim, sim.var_names.get_indexer(response_genes))
matrix[block] = rng.poisson(4 * matrix[block])
sim.layers["counts"] = matrix
sim.X = matrix.copy()
sc.pp.normalize_total(sim, target_sum=1e4)
sc.pp.log1p(sim)
sc.pp.pca(sim, n_comps=50)

mixvi.model.CVAE.setup_anndata(sim, layer="counts", condition_key="condition")
cvae = mixvi.model.CVAE(sim, likelihood="nb")
cvae.train(**epochs, enable_progress_bar=False)
cvae.write_results(sim)                      # obsm["X_cvae"]

for rep in ["X_pca", "X_cvae"]:
    sc.pp.neighbors(sim, use_rep=rep)
    sc.tl.umap(sim)
    sc.pl.umap(sim, color=["condition", "cell_type"], title=[f"{rep}: condition", f"{rep}: cell type"], wspace=0.5)

# %% [markdown]
# `decode_counterfactual` returns expected counts at each cell's own library size, so the ratio of the two decodings is the model's fold change for that cell. Because the library size is kept, the counts that the response genes gain under "stim" come out of the other genes' share: those move down a little, and the response genes' change is best read against them.

# %%
ctrl_idx = np.flatnonzero(~stim)
as_ctrl = cvae.decode_counterfactual("ctrl", indices=ctrl_idx)
as_stim = cvae.decode_counterfactual("stim", indices=ctrl_idx)
log2_fc = pd.Series(np.log2(as_stim.mean(0) / as_ctrl.mean(0)), index=sim.var_names)
is_response = sim.var_names.isin(response_genes)
fig, ax = plt.subplots(figsize=(5, 3))
ax.hist([log2_fc[~is_response], log2_fc[is_response]], bins=40, label=["other genes", "simulated response genes"], stacked=True)
ax.set_xlabel("counterfactual log2 fold change (stim / ctrl), control cells")
ax.legend();
print(f"median log2 fold change: response genes {log2_fc[is_response].median():.2f} (simulated 2.0), other genes {log2_fc[~is_response].median():.2f}")

# %% [markdown]
# ## Part 3: clusters free of the condition
#
# A GMVAE set up with a `condition_key` clusters by what the condition does not explain. We simulate counts with `mixvi.data.simulate_counts`: 5 cell types in unequal proportions (35/25/20/12/8 %) under 3 conditions, each of which multiplies every gene by its own log-normal factor, as a batch that touches the whole transcriptome does. Next to it: scvi-tools' SCVI with the condition as `batch_key`, then Leiden with its resolution searched for 5 clusters (labels are used only to score). Where scVI's latent keeps the conditions of a type apart, no resolution gives as few as 5, and the table shows how many the search found.

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
counts.obs["scvi_leiden"] = pd.Categorical(mixvi.model.leiden_clusters(counts.obsm["X_scvi"], 5, exact=False))

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
