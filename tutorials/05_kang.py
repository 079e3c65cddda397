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
# # A real condition: IFN-β stimulated PBMCs (Kang 2018)
#
# Kang et al. (2018) profiled blood cells of 8 donors twice: as they were (control) and after interferon-β stimulation. The stimulation moves hundreds of genes in every cell type, so a plain clustering splits each type by condition. This tutorial asks the two questions a condition raises:
#
# 1. **Clusters free of the condition.** A GMVAE set up with `condition_key` clusters by what the condition does not explain. Next to it: PCA + Leiden, Harmony + Leiden and scVI (`batch_key`) + Leiden, each at K clusters.
# 2. **A response predicted for a cell type never seen stimulated** (scGen's benchmark). We hide the stimulated CD4 naive T cells, train a CVAE on the rest, and decode their control cells as stimulated.
#
# `mixvi.data.kang18()` fetches the data once into `~/.cache/mixvi`: raw UMI counts, 10 cell types in `obs["cell_type"]`, and `obs["condition"]` (control / stimulated). The models read the counts; PCA and Harmony read log-normalised values. Labels only score the results.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.metrics import adjusted_rand_score

import mixvi
from mixvi.metrics import clustering_scores

SMALL = os.environ.get("MIXVI_TUTORIAL_SMALL") == "1"  # CI runs a subset with a few epochs
mixvi.settings.seed = 0
EPOCHS = 3 if SMALL else 100                            # every model's epochs

# %%
adata = mixvi.data.kang18()                             # counts in X and layers["counts"]
if SMALL:
    adata = adata[np.random.default_rng(0).choice(adata.n_obs, 2_000, replace=False)].copy()
sc.pp.filter_genes(adata, min_cells=3)
sc.pp.highly_variable_genes(adata, n_top_genes=2_000, flavor="seurat_v3", layer="counts", subset=True)
sc.pp.normalize_total(adata, target_sum=1e4)            # X: log-normalised; the counts stay in the layer
sc.pp.log1p(adata)
sc.pp.pca(adata, n_comps=50)
K = adata.obs["cell_type"].nunique()
pd.crosstab(adata.obs["cell_type"], adata.obs["condition"])

# %% [markdown]
# ## Part 1: clusters free of the stimulation
#
# The conditional GMVAE: `setup_anndata` with the condition, train, write the latent and the clusters back. Its encoder and decoder are both told the condition, so its latent, and the mixture in it, need not hold it.

# %%
mixvi.model.GMVAE.setup_anndata(adata, layer="counts", condition_key="condition")
gmvae = mixvi.model.GMVAE(adata, n_components=K, likelihood="nb")
gmvae.train(max_epochs=EPOCHS, enable_progress_bar=False)
gmvae.write_results(adata)                              # obsm["X_gmvae"], obs["gmvae_cluster"]

# %% [markdown]
# The baselines, each clustered by Leiden with its resolution searched for K clusters (`mixvi.model.leiden_clusters`):
#
# - **PCA**: what the scanpy pipeline gives without a correction;
# - **Harmony** (`harmonypy`, `pip install harmonypy`) on the same 50 principal components, with the condition as its batch;
# - **scVI** on the counts with the condition as `batch_key`, for the same epochs.

# %%
import harmonypy
import scvi

corrected = harmonypy.run_harmony(adata.obsm["X_pca"], adata.obs, "condition", random_state=0, verbose=False).Z_corr
# harmonypy 2 returns cells x PCs, older versions PCs x cells
adata.obsm["X_harmony"] = np.asarray(corrected if len(corrected) == adata.n_obs else corrected.T)

scvi.settings.seed = 0
scvi.model.SCVI.setup_anndata(adata, layer="counts", batch_key="condition")
scvi_model = scvi.model.SCVI(adata)
scvi_model.train(max_epochs=EPOCHS, enable_progress_bar=False)
adata.obsm["X_scvi"] = scvi_model.get_latent_representation()

clusters = {"conditional GMVAE": "gmvae_cluster"}
for method, rep in [("PCA + Leiden", "X_pca"), ("Harmony + Leiden", "X_harmony"), ("scVI + Leiden", "X_scvi"),
                    ("Leiden on the GMVAE's latent", "X_gmvae")]:
    key = f"leiden_{rep}"
    adata.obs[key] = pd.Categorical(mixvi.model.leiden_clusters(adata.obsm[rep], K, exact=False))
    clusters[method] = key


def scores(key: str) -> dict:
    got = clustering_scores(adata.obs["cell_type"], adata.obs[key])
    return {"type ARI": got["ari"], "type NMI": got["nmi"],
            "ARI with condition (0 is best)": adjusted_rand_score(adata.obs["condition"], adata.obs[key]),
            "clusters": adata.obs[key].nunique()}


pd.DataFrame({method: scores(key) for method, key in clusters.items()}).T.round(3)

# %% [markdown]
# The benchmark (`benchmarks/conditional.py --data kang`, on the Benchmarks page) runs the same comparison over seeds, with scib-metrics' scores of each embedding; this table is one seed.
#
# On a UMAP of the GMVAE's latent the two conditions of a type should lie together, and the clusters follow the types:

# %%
sc.pp.neighbors(adata, use_rep="X_gmvae")
sc.tl.umap(adata)
sc.pl.umap(adata, color=["cell_type", "condition", "gmvae_cluster"], wspace=0.45)

# %% [markdown]
# The same UMAP of PCA, for contrast: there the stimulation splits the types.

# %%
pca_view = adata.copy()
sc.pp.neighbors(pca_view, use_rep="X_pca")
sc.tl.umap(pca_view)
sc.pl.umap(pca_view, color=["cell_type", "condition", "leiden_X_pca"], wspace=0.45)
pd.crosstab(adata.obs["cell_type"], adata.obs["gmvae_cluster"])

# %% [markdown]
# ## Part 2: the stimulated response of a cell type never seen stimulated
#
# We remove every stimulated CD4 naive T cell, train a CVAE with the condition on the rest, and decode the type's control cells as stimulated. `decode_counterfactual(..., sample=True)` draws counts from the model at each cell's own library size, so the prediction can be log-normalised exactly as the real cells are (the mean of `log1p` of counts is not `log1p` of their mean). The real stimulated CD4 naive T cells, which the model never saw, score it:
#
# - R² of the mean log-normalised expression per gene, over all genes and over the type's 100 most changed genes (Wilcoxon, control against stimulated, on the real cells);
# - next to it, **no change**: the control cells as they are.

# %%
HELD_OUT = "CD4 Naive T"
is_type = (adata.obs["cell_type"] == HELD_OUT).to_numpy()
stimulated = (adata.obs["condition"] == "stimulated").to_numpy()
train = adata[~(is_type & stimulated)].copy()
mixvi.model.CVAE.setup_anndata(train, layer="counts", condition_key="condition")
cvae = mixvi.model.CVAE(train, likelihood="nb")
cvae.train(max_epochs=EPOCHS, batch_size=128, enable_progress_bar=False)

control = np.flatnonzero((train.obs["cell_type"] == HELD_OUT).to_numpy())
drawn = cvae.decode_counterfactual("stimulated", indices=control, sample=True, seed=0)
predicted = np.log1p(drawn / drawn.sum(1, keepdims=True) * 1e4).mean(0)
real = np.asarray(adata[is_type & stimulated].X.mean(0)).ravel()
unchanged = np.asarray(train[control].X.mean(0)).ravel()

cells = adata[is_type].copy()
sc.tl.rank_genes_groups(cells, "condition", groups=["stimulated"], reference="control", method="wilcoxon")
ranked = sc.get.rank_genes_groups_df(cells, group="stimulated")
top = adata.var_names.get_indexer(ranked.loc[ranked["scores"].abs().sort_values(ascending=False).index, "names"][:100])


def r2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1] ** 2)


pd.DataFrame({
    "CVAE (drawn counts)": {"R² all genes": r2(predicted, real), "R² top 100 genes": r2(predicted[top], real[top])},
    "no change": {"R² all genes": r2(unchanged, real), "R² top 100 genes": r2(unchanged[top], real[top])},
}).T.round(3)

# %% [markdown]
# As in scGen's figures: the predicted against the real mean expression of each gene, the top 100 in colour and the ten most changed named.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharex=True, sharey=True)
for ax, (title, values) in zip(axes, [("CVAE, held-out type decoded as stimulated", predicted),
                                      ("no change (control cells)", unchanged)], strict=True):
    ax.scatter(real, values, s=4, c="lightgrey", label="all genes")
    ax.scatter(real[top], values[top], s=8, c="tab:red", label="top 100 changed genes")
    for gene in top[:10]:
        ax.annotate(adata.var_names[gene], (real[gene], values[gene]), fontsize=7)
    lim = [0, max(real.max(), values.max()) * 1.05]
    ax.plot(lim, lim, lw=0.5, c="k")
    ax.set_title(f"{title}\nR² all {r2(values, real):.2f}, top 100 {r2(values[top], real[top]):.2f}", fontsize=9)
    ax.set_xlabel(f"real stimulated {HELD_OUT}, mean log expression")
axes[0].set_ylabel("predicted mean log expression")
axes[0].legend(fontsize=7);

# %% [markdown]
# `benchmarks/perturbation.py` runs this for each of the 10 types in turn, next to pertpy's scGen and a mean shift (the other types' average response added to the held-out type's control mean); its table is on the Benchmarks page, with how many of the types and seeds have run.
