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
# # The theory, made visible
#
# 1. A linear autoencoder spans the PCA subspace.
# 2. The KL term shapes the latent space, and a mixture prior makes it clustered.
# 3. The ELBO is a Monte Carlo estimate whose spread shrinks like 1/√k with k draws of z.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy.linalg import subspace_angles
from scvi import REGISTRY_KEYS

import mixvi

SMALL = os.environ.get("MIXVI_TUTORIAL_SMALL") == "1"  # CI runs a subset with a few epochs
mixvi.settings.seed = 0

# %% [markdown]
# ## 1. Linear AE versus PCA
#
# A linear AE trained on squared error reaches the best rank-d reconstruction, whose column space is the top-d principal subspace (Eckart–Young). We compare the decoder's column space with PCA's loadings through principal angles. Two settings matter: `learn_scale=False` keeps the loss a plain squared error (a learned per-gene variance would weight the genes, and the optimum would be a weighted PCA), and a larger learning rate lets the optimisation get there in a few hundred epochs. pbmc68k_reduced is scaled data with a flat spectrum (the first components explain 5 %, 3 %, 2 % … of the variance), so the closer two eigenvalues are, the less the boundary of the subspace is pinned down and the larger the angle that optimisation leaves.

# %%
adata = mixvi.data.pbmc68k_reduced()
centred = adata.X - adata.X.mean(0)
_, singular, loadings = np.linalg.svd(centred, full_matrices=False)
explained = singular**2 / (singular**2).sum()
rng = np.random.default_rng(0)
rows = {}
for d in [2, 5, 10]:
    mixvi.model.AE.setup_anndata(adata)
    ae = mixvi.model.AE(adata, linear=True, n_latent=d, likelihood="normal", learn_scale=False)
    ae.train(max_epochs=5 if SMALL else 300, lr=1e-2, train_size=1.0, enable_progress_bar=False)
    decoder = ae.module.px.loc.fc_layers[0][0].weight.detach().numpy()  # genes × d
    random = rng.normal(size=decoder.shape)
    rows[d] = {
        "linear AE (degrees)": np.degrees(subspace_angles(decoder, loadings[:d].T)).max(),
        "random subspace (degrees)": np.degrees(subspace_angles(random, loadings[:d].T)).max(),
        "eigenvalue gap d→d+1 (% variance)": 100 * (explained[d - 1] - explained[d]),
    }
pd.DataFrame(rows).T.rename_axis("d").round(2)

# %% [markdown]
# ## 2. What the KL term and the mixture prior do
#
# Two-dimensional latents of the MNIST 5k subset: the AE has no prior, the VAE's KL pulls codes towards N(0, I), and the GMVAE's mixture prior pulls them into one Gaussian per component (ellipses: 2 σ of each component).

# %%
digits = mixvi.data.mnist_5k()
if SMALL:
    digits = digits[:600].copy()
ep = 2 if SMALL else 40
latents = {}
for name, cls, kwargs in [("AE", mixvi.model.AE, {}), ("VAE", mixvi.model.VAE, {}), ("GMVAE", mixvi.model.GMVAE, {"n_components": 10})]:
    cls.setup_anndata(digits)
    m = cls(digits, likelihood="bernoulli", n_latent=2, n_hidden=256, n_layers=2, **kwargs)
    m.train(max_epochs=2 * ep if name == "GMVAE" else ep, enable_progress_bar=False, **({"pretrain_epochs": ep} if name == "GMVAE" else {}))
    latents[name] = m.get_latent_representation()
    if name == "GMVAE":
        gm = m
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
codes = digits.obs["label"].cat.codes
for ax, (name, z) in zip(axes, latents.items(), strict=True):
    ax.scatter(z[:, 0], z[:, 1], c=codes, cmap="tab10", s=2)
    ax.set_title(name)
from matplotlib.patches import Ellipse

means = gm.module.prior.means.detach().numpy()
sds = np.exp(0.5 * gm.module.prior.log_var.detach().numpy())
for mu, sd, w in zip(means, sds, gm.component_weights, strict=True):
    axes[2].add_patch(Ellipse(mu, 4 * sd[0], 4 * sd[1], fill=False, lw=1 + 10 * w, color="k"))
plt.tight_layout()

# %% [markdown]
# ## 3. The ELBO's Monte Carlo estimate
#
# The reconstruction term is averaged over k draws z ~ q(z|x). For one trained VAE and a fixed minibatch, we repeat the estimate 200 times for each k: the mean does not move (the estimator is unbiased), the spread falls like 1/√k.

# %%
mixvi.model.VAE.setup_anndata(digits)
vae = mixvi.model.VAE(digits, likelihood="bernoulli", n_latent=10)
vae.train(max_epochs=ep, enable_progress_bar=False)
vae.module.eval()
x = torch.as_tensor(digits.X[:64])
tensors = {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: torch.zeros(64, 1, dtype=torch.long)}
rows = []
with torch.no_grad():
    for k in [1, 2, 4, 8, 16, 32, 64]:
        est = torch.stack([-vae.module(tensors, inference_kwargs={"n_samples": k})[2].loss for _ in range(50 if SMALL else 200)])
        rows.append({"k": k, "mean ELBO": est.mean().item(), "sd": est.std().item()})
table = pd.DataFrame(rows).set_index("k")
fig, ax = plt.subplots(figsize=(5, 3))
ax.loglog(table.index, table["sd"], "o-", label="measured sd")
ax.loglog(table.index, table["sd"].iloc[0] / np.sqrt(table.index), "--", label="sd(k=1)/√k")
ax.set_xlabel("k (draws of z per cell)"); ax.set_ylabel("sd of the ELBO estimate"); ax.legend()
table.round(3)
