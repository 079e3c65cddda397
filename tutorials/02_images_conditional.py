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
# # A conditional VAE on Fashion-MNIST: generation on demand and style transfer
#
# Conditioning on the garment class lets the decoder draw any class on request. Because the class is given, the latent is free to hold what the class does not explain — the *style* (thickness, tilt, brightness). Decoding one latent under every class transfers that style.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc

import mixvi

SMALL = os.environ.get("MIXVI_TUTORIAL_SMALL") == "1"  # CI runs a subset with a few epochs
mixvi.settings.seed = 0

# %%
adata = mixvi.data.fashion_mnist(split="train", n_obs=1000 if SMALL else 10_000)
mixvi.model.CVAE.setup_anndata(adata, condition_key="label")
model = mixvi.model.CVAE(adata, likelihood="bernoulli", n_hidden=256, n_layers=2, n_latent=8)
model.train(max_epochs=1 if SMALL else 40, batch_size=256, enable_progress_bar=False)
model.write_results(adata)   # obsm["X_cvae"]
model.conditions

# %% [markdown]
# ## Each class on demand
#
# One row per class: the same prior draws z, decoded under each condition.

# %%
mixvi.pl.samples(model, n=8);

# %% [markdown]
# ## Style transfer
#
# Encode a few images, then decode each one's latent under every class (columns).

# %%
rng = np.random.default_rng(0)
picked = rng.choice(adata.n_obs, 6, replace=False)
conditions = list(model.conditions)
panels = np.stack([model.decode_counterfactual(c, indices=picked) for c in conditions], axis=1)  # (6, n_classes, 784)
fig, axes = plt.subplots(len(picked), len(conditions) + 1, figsize=(len(conditions) + 1, len(picked)))
for i, row in enumerate(picked):
    axes[i, 0].imshow(adata.X[row].reshape(28, 28), cmap="gray_r")
    for j in range(len(conditions)):
        axes[i, j + 1].imshow(panels[i, j].reshape(28, 28), cmap="gray_r")
for ax in axes.ravel():
    ax.set_xticks([]); ax.set_yticks([])
axes[0, 0].set_title("input", fontsize=7)
for j, c in enumerate(conditions):
    axes[0, j + 1].set_title(str(c), fontsize=7)
plt.tight_layout()

# %% [markdown]
# ## The latent holds style, not class
#
# With the class given to the decoder, the classes overlap in the CVAE latent (compare the UMAP of the pixels).

# %%
sc.pp.neighbors(adata, use_rep="X_cvae")
sc.tl.umap(adata)
sc.pl.umap(adata, color="label", title="CVAE latent")
from sklearn.cluster import KMeans

from mixvi.metrics import clustering_scores

print("k-means on the CVAE latent vs class:", clustering_scores(adata.obs["label"], KMeans(10, n_init=5, random_state=0).fit_predict(adata.obsm["X_cvae"])))
