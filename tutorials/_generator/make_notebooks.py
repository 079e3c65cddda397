import sys
from pathlib import Path

import nbformat as nbf

# Regenerates the tutorial notebooks (without outputs) from this one file:
#   python tutorials/_generator/make_notebooks.py [NAME ...]   (no names: all of them)
# Naming notebooks leaves the others, and their full-size outputs, untouched.
OUT = Path(__file__).resolve().parents[1]
ONLY = set(sys.argv[1:])
HEADER = '''import logging
import os
import warnings

# CI sets MIXVI_TUTORIAL_SMALL=1: a subset and few epochs, so that the notebook runs in a minute or two.
SMALL = os.environ.get("MIXVI_TUTORIAL_SMALL", "0") == "1"
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in a kernel without ipywidgets

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc

import mixvi

# Lightning prints a banner, a tip and deprecation notes on every train(); keep its errors only
for name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="lightning")

mixvi.settings.seed = 0
sc.settings.verbosity = 0'''

def nb(name, cells):
    if ONLY and name not in ONLY:
        return
    book = nbf.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = []
    for kind, text in cells:
        out.append(nbf.v4.new_markdown_cell(text) if kind == "md" else nbf.v4.new_code_cell(text))
    book.cells = out
    nbf.write(book, OUT / f"{name}.ipynb")

M = lambda t: ("md", t)
C = lambda t: ("code", t)

nb("01_images_clustering", [
    M("# Clustering Fashion-MNIST with the GMVAE\n\nThe Gaussian-mixture VAE learns a latent space and clusters in one model. We load 20,000 Fashion-MNIST images through mixvi's AnnData adapter, train a GMVAE with ten components, and compare its clusters with the labels (used only to score) and with PCA + k-means."),
    C(HEADER),
    M("## Data\n\nEach image is one observation with 784 pixel features in [0, 1]; the garment class is in `obs[\"label\"]`."),
    C('''# 20,000 of the 70,000 images keep this notebook to minutes on a laptop CPU;
# benchmarks/quality.py runs all 70,000 (n_obs=None).
adata = mixvi.data.fashion_mnist(split="all", n_obs=1500 if SMALL else 20_000)
adata'''),
    C('''mixvi.pl.images(adata, n=8, groupby="label");'''),
    M("## Train\n\nThe Bernoulli likelihood suits pixel intensities. Training pretrains the encoder and decoder as an autoencoder, starts the mixture from a UMAP + Gaussian-mixture clustering of the pretrained latent, trains a few epochs with q(c|x) anchored to that start, and then the full ELBO."),
    C('''mixvi.model.GMVAE.setup_anndata(adata)
model = mixvi.model.GMVAE(adata, n_components=10, likelihood="bernoulli", n_hidden=256)
model.train(
    max_epochs=2 if SMALL else 25,
    pretrain_epochs=1 if SMALL else 25,
    anchor_epochs=1 if SMALL else 12,
    batch_size=256,
    enable_progress_bar=False,
)
model.write_results(adata)
print("collapsed components:", model.collapsed_components())'''),
    C('''history = pd.concat([model.pretrain_history_["elbo_train"].rename(columns={"elbo_train": "pretraining (AE)"}).reset_index(drop=True),
                     model.history["elbo_train"].rename(columns={"elbo_train": "GMVAE"}).reset_index(drop=True)], axis=1)
history.plot(subplots=True, figsize=(7, 3), xlabel="epoch", ylabel="-ELBO / loss");'''),
    M("## The latent space\n\nThe latent means are in `obsm[\"X_gmvae\"]`, ready for scanpy."),
    C('''# transformer="sklearn": exact neighbours. scanpy 1.11's default pynndescent graph fails with
# scipy >= 1.17 above ~10,000 cells (csr_array has no getnnz).
sc.pp.neighbors(adata, use_rep="X_gmvae", transformer="sklearn")
sc.tl.umap(adata)
sc.pl.umap(adata, color=["label", "gmvae_cluster"], wspace=0.4)'''),
    M("## Clusters against labels"),
    C('''pd.crosstab(adata.obs["label"], adata.obs["gmvae_cluster"])'''),
    C('''from sklearn.cluster import KMeans

from mixvi.metrics import clustering_scores

sc.pp.pca(adata, n_comps=50)
kmeans = KMeans(10, n_init=10, random_state=0).fit_predict(adata.obsm["X_pca"])
scores = pd.DataFrame({
    "GMVAE": clustering_scores(adata.obs["label"], adata.obs["gmvae_cluster"]),
    "PCA-50 + k-means": clustering_scores(adata.obs["label"], kmeans),
}).T.round(3)
scores'''),
    M("## Reconstructions and samples\n\nTop: images; bottom: their reconstructions. Then ten samples from each mixture component: each row is what the model thinks one cluster looks like."),
    C('''mixvi.pl.reconstructions(model, n=10);'''),
    C('''mixvi.pl.samples(model, n=10);'''),
    C('''mixvi.pl.cluster_examples(adata, "gmvae_cluster", n_per_cluster=10);'''),
])

nb("02_images_conditional", [
    M("# A conditional VAE on Fashion-MNIST: generation on demand and style transfer\n\nConditioning on the garment class lets the decoder draw any class on request. Because the class is given, the latent is free to hold what the class does not explain — the *style* (thickness, tilt, brightness). Decoding one latent under every class transfers that style."),
    C(HEADER),
    C('''adata = mixvi.data.fashion_mnist(split="train", n_obs=1000 if SMALL else 10_000)
mixvi.model.CVAE.setup_anndata(adata, condition_key="label")
model = mixvi.model.CVAE(adata, likelihood="bernoulli", n_hidden=256, n_layers=2, n_latent=8)
model.train(max_epochs=1 if SMALL else 40, batch_size=256, enable_progress_bar=False)
model.write_results(adata)   # obsm["X_cvae"]
model.conditions'''),
    M("## Each class on demand\n\nOne row per class: the same prior draws z, decoded under each condition."),
    C('''mixvi.pl.samples(model, n=8);'''),
    M("## Style transfer\n\nEncode a few images, then decode each one's latent under every class (columns)."),
    C('''rng = np.random.default_rng(0)
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
plt.tight_layout()'''),
    M("## The latent holds style, not class\n\nWith the class given to the decoder, the classes overlap in the CVAE latent (compare the UMAP of the pixels)."),
    C('''sc.pp.neighbors(adata, use_rep="X_cvae", transformer="sklearn")  # see tutorial 1
sc.tl.umap(adata)
sc.pl.umap(adata, color="label", title="CVAE latent")
from mixvi.metrics import clustering_scores
from sklearn.cluster import KMeans
print("k-means on the CVAE latent vs class:", clustering_scores(adata.obs["label"], KMeans(10, n_init=5, random_state=0).fit_predict(adata.obsm["X_cvae"])))'''),
])

nb("03_single_cell", [
    M("# Single-cell data with scanpy: VAE, GMVAE and a CVAE\n\nscanpy's `pbmc68k_reduced` holds 700 PBMCs with scaled expression of 765 genes and ten reference cell types (`bulk_labels`). Scaled values call for the normal likelihood; with raw counts, pass `layer=\"counts\"` and `likelihood=\"nb\"`."),
    C(HEADER),
    C('''adata = mixvi.data.pbmc68k_reduced()
adata'''),
    M("## Part 1: VAE and GMVAE next to PCA\n\n`setup_anndata`, train, write the latent to `obsm`, then scanpy as usual."),
    C('''epochs = 6 if SMALL else 150
mixvi.model.VAE.setup_anndata(adata)
vae = mixvi.model.VAE(adata, likelihood="normal")
vae.train(max_epochs=epochs, enable_progress_bar=False)
vae.write_results(adata)                      # obsm["X_vae"]

mixvi.model.GMVAE.setup_anndata(adata)
gmvae = mixvi.model.GMVAE(adata, n_components=10, likelihood="normal", n_hidden=128)
gmvae.train(max_epochs=epochs // 2, pretrain_epochs=epochs // 2, enable_progress_bar=False)
gmvae.write_results(adata)                    # obsm["X_gmvae"], obs["gmvae_cluster"]'''),
    C('''from mixvi.metrics import clustering_scores

rows = {}
for rep in ["X_pca", "X_vae", "X_gmvae"]:
    sc.pp.neighbors(adata, use_rep=rep, key_added=rep)
    sc.tl.leiden(adata, neighbors_key=rep, key_added=f"leiden_{rep}", flavor="igraph", n_iterations=2)
    rows[f"{rep} + Leiden"] = clustering_scores(adata.obs["bulk_labels"], adata.obs[f"leiden_{rep}"])
rows["GMVAE clusters"] = clustering_scores(adata.obs["bulk_labels"], adata.obs["gmvae_cluster"])
pd.DataFrame(rows).T.round(3)'''),
    C('''sc.tl.umap(adata, neighbors_key="X_vae")
sc.pl.umap(adata, color=["bulk_labels", "leiden_X_vae", "gmvae_cluster"], wspace=0.5)'''),
    M("## Choosing K\n\nTrain one GMVAE per candidate K on the same 90 % of the cells and compare the ELBO of the held-out 10 %; collapsed components are listed too."),
    C('''table = mixvi.model.GMVAE.compare_n_components(
    adata, [4, 8, 12] if not SMALL else [2, 4],
    model_kwargs={"likelihood": "normal", "n_hidden": 128},
    train_kwargs={"max_epochs": epochs // 3, "pretrain_epochs": epochs // 3, "enable_progress_bar": False},
)
table'''),
    M("## Part 2: a CVAE with a condition, and counterfactual decoding\n\n`pbmc68k_reduced` has a single condition, so we **simulate** one: half of the cells are \"stimulated\" by adding +2 (in scaled units) to 20 genes. A CVAE conditioned on `condition` should (a) mix the two conditions in its latent, while PCA separates them, and (b) decode control cells as if stimulated, recovering the shift in exactly those genes."),
    C('''rng = np.random.default_rng(0)
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
    sc.pl.umap(sim, color=["condition", "bulk_labels"], title=[f"{rep}: condition", f"{rep}: cell type"], wspace=0.5)'''),
    C('''ctrl_idx = np.flatnonzero(~stim)
as_ctrl = cvae.decode_counterfactual("ctrl", indices=ctrl_idx)
as_stim = cvae.decode_counterfactual("stim", indices=ctrl_idx)
shift = pd.Series((as_stim - as_ctrl).mean(0), index=sim.var_names)
is_response = sim.var_names.isin(response_genes)
fig, ax = plt.subplots(figsize=(5, 3))
ax.hist([shift[~is_response], shift[is_response]], bins=40, label=["other genes", "simulated response genes"], stacked=True)
ax.set_xlabel("counterfactual shift (stim − ctrl), mean over control cells")
ax.legend();
print(f"mean shift: response genes {shift[is_response].mean():.2f} (simulated 2.0), other genes {shift[~is_response].mean():.2f}")'''),
])

nb("04_theory", [
    M("# The theory, made visible\n\n1. A linear autoencoder spans the PCA subspace.\n2. The KL term shapes the latent space, and a mixture prior makes it clustered.\n3. The ELBO is a Monte Carlo estimate whose spread shrinks like 1/√k with k draws of z."),
    C(HEADER + '''
import torch
from scipy.linalg import subspace_angles
from scvi import REGISTRY_KEYS'''),
    M("## 1. Linear AE versus PCA\n\nA linear AE trained on squared error reaches the best rank-d reconstruction, whose column space is the top-d principal subspace (Eckart–Young). We compare the decoder's column space with PCA's loadings through principal angles. Two settings matter: `learn_scale=False` keeps the loss a plain squared error (a learned per-gene variance would weight the genes, and the optimum would be a weighted PCA), and a larger learning rate lets the optimisation get there in a few hundred epochs. pbmc68k_reduced is scaled data with a flat spectrum (the first components explain 5 %, 3 %, 2 % … of the variance), so the closer two eigenvalues are, the less the boundary of the subspace is pinned down and the larger the angle that optimisation leaves."),
    C('''adata = mixvi.data.pbmc68k_reduced()
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
pd.DataFrame(rows).T.rename_axis("d").round(2)'''),
    M("## 2. What the KL term and the mixture prior do\n\nTwo-dimensional latents of the MNIST 5k subset: the AE has no prior, the VAE's KL pulls codes towards N(0, I), and the GMVAE's mixture prior pulls them into one Gaussian per component (ellipses: 2 σ of each component)."),
    C('''digits = mixvi.data.mnist_5k()
if SMALL:
    digits = digits[:600].copy()
ep = 2 if SMALL else 40
latents = {}
for name, cls, kwargs in [("AE", mixvi.model.AE, {}), ("VAE", mixvi.model.VAE, {}), ("GMVAE", mixvi.model.GMVAE, {"n_components": 10})]:
    cls.setup_anndata(digits)
    m = cls(digits, likelihood="bernoulli", n_latent=2, n_hidden=256, n_layers=2, **kwargs)
    m.train(max_epochs=ep, enable_progress_bar=False, **({"pretrain_epochs": ep} if name == "GMVAE" else {}))
    latents[name] = m.get_latent_representation()
    if name == "GMVAE":
        gm = m
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
codes = digits.obs["label"].cat.codes
for ax, (name, z) in zip(axes, latents.items()):
    ax.scatter(z[:, 0], z[:, 1], c=codes, cmap="tab10", s=2)
    ax.set_title(name)
from matplotlib.patches import Ellipse
means = gm.module.prior_means.detach().numpy()
sds = np.exp(0.5 * gm.module.prior_log_var.detach().numpy())
for mu, sd, w in zip(means, sds, gm.component_weights):
    axes[2].add_patch(Ellipse(mu, 4 * sd[0], 4 * sd[1], fill=False, lw=1 + 10 * w, color="k"))
plt.tight_layout()'''),
    M("## 3. The ELBO's Monte Carlo estimate\n\nThe reconstruction term is averaged over k draws z ~ q(z|x). For one trained VAE and a fixed minibatch, we repeat the estimate 200 times for each k: the mean does not move (the estimator is unbiased), the spread falls like 1/√k."),
    C('''mixvi.model.VAE.setup_anndata(digits)
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
table.round(3)'''),
])
print("written")
