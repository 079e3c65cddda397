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
# # Clustering Fashion-MNIST with the GMVAE
#
# The Gaussian-mixture VAE learns a latent space and clusters in one model. We load 20,000 Fashion-MNIST images through mixvi's AnnData adapter, train a GMVAE with ten components, and compare its clusters with the labels (used only to score) and with PCA + k-means.

# %%
import os

import matplotlib.pyplot as plt
import pandas as pd
import scanpy as sc

import mixvi

SMALL = os.environ.get("MIXVI_TUTORIAL_SMALL") == "1"  # CI runs a subset with a few epochs
mixvi.settings.seed = 0

# %% [markdown]
# ## Data
#
# Each image is one observation with 784 pixel features in [0, 1]; the garment class is in `obs["label"]`.

# %%
# 20,000 of the 70,000 images keep this notebook to minutes on a laptop CPU;
# benchmarks/quality.py runs all 70,000 (n_obs=None).
adata = mixvi.data.fashion_mnist(split="all", n_obs=1500 if SMALL else 20_000)
adata

# %%
mixvi.pl.images(adata, n=8, groupby="label");

# %% [markdown]
# ## Train
#
# The Bernoulli likelihood suits pixel intensities. Training pretrains the encoder and decoder as an autoencoder, starts the mixture from a UMAP + Gaussian-mixture clustering of the pretrained latent, trains a few epochs with q(c|x) anchored to that start, and then the full ELBO.

# %%
mixvi.model.GMVAE.setup_anndata(adata)
model = mixvi.model.GMVAE(adata, n_components=10, likelihood="bernoulli", n_hidden=256)
model.train(
    max_epochs=3 if SMALL else 50,  # all phases: 25 pretraining epochs, then 25 of the GMVAE
    pretrain_epochs=1 if SMALL else 25,
    anchor_epochs=1 if SMALL else 12,
    batch_size=256,
    enable_progress_bar=False,
)
model.write_results(adata)
print("collapsed components:", model.collapsed_components())

# %%
# each phase once: the pretraining's reconstruction loss, then the GMVAE's minus ELBO
# (anchored epochs left of the dotted line, free ones right of it)
n_pretrain = len(model.pretrain_history_["elbo_train"])
n_anchor = len(model.anchor_history_["elbo_train"])
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
model.pretrain_history_["elbo_train"].plot(ax=left, legend=False, title="pretraining (AE)", xlabel="epoch", ylabel="loss")
model.history["elbo_train"].iloc[n_pretrain:].plot(ax=right, legend=False, title="GMVAE", xlabel="epoch", ylabel="-ELBO")
right.axvline(n_pretrain + n_anchor - 0.5, color="grey", linestyle=":")
plt.tight_layout()

# %% [markdown]
# ## The latent space
#
# The latent means are in `obsm["X_gmvae"]`, ready for scanpy.

# %%
sc.pp.neighbors(adata, use_rep="X_gmvae")
sc.tl.umap(adata)
sc.pl.umap(adata, color=["label", "gmvae_cluster"], wspace=0.4)

# %% [markdown]
# ## Clusters against labels

# %%
pd.crosstab(adata.obs["label"], adata.obs["gmvae_cluster"])

# %%
from sklearn.cluster import KMeans

from mixvi.metrics import clustering_scores

sc.pp.pca(adata, n_comps=50)
kmeans = KMeans(10, n_init=10, random_state=0).fit_predict(adata.obsm["X_pca"])
scores = pd.DataFrame({
    "GMVAE": clustering_scores(adata.obs["label"], adata.obs["gmvae_cluster"]),
    "PCA-50 + k-means": clustering_scores(adata.obs["label"], kmeans),
}).T.round(3)
scores

# %% [markdown]
# ## Reconstructions and samples
#
# Top: images; bottom: their reconstructions. Then ten samples from each mixture component: each row is what the model thinks one cluster looks like.

# %%
mixvi.pl.reconstructions(model, n=10);

# %%
mixvi.pl.samples(model, n=10);

# %%
mixvi.pl.cluster_examples(adata, "gmvae_cluster", n_per_cluster=10);
