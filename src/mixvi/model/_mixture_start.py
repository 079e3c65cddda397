"""The GMVAE's mixture start: clusters of the pretrained latent turned into the prior.

Mixture VAEs trained from a random prior collapse; VaDE :cite:p:`Jiang2017` and N2D
:cite:p:`McConville2021` start the mixture from a clustering of a pretrained latent
instead. This module holds that clustering, on plain arrays (no torch, no AnnData), so
that a new start can be tried on any latent, and so that the choice of K
(:mod:`mixvi.model._n_components`) can use the same UMAP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

Init = Literal["umap", "leiden", "pca", "gmm", "kmeans"]
INITS: tuple[str, ...] = ("umap", "leiden", "pca", "gmm", "kmeans")
#: principal components of the model's input that the ``"pca"`` start clusters, as scanpy's
#: pipeline takes 50
INPUT_PCS = 50


def check_start(
    init: str, umap_neighbors: int = 15, umap_cells: int | None = None, name: str = "init"
) -> None:
    """Reject a bad start before any training time is spent."""
    if init not in INITS:
        *others, last = map(repr, INITS)
        raise ValueError(f"{name} must be {', '.join(others)} or {last}, got {init!r}.")
    if init in ("umap", "leiden", "pca") and umap_neighbors < 2:
        raise ValueError(f"umap_neighbors must be >= 2, got {umap_neighbors}.")
    if umap_cells is None:
        return
    if (
        isinstance(umap_cells, bool)
        or not isinstance(umap_cells, int | np.integer)
        or umap_cells < 2
    ):
        raise ValueError(f"umap_cells must be None or an integer >= 2, got {umap_cells!r}.")


@dataclass
class MixtureStart:
    """A clustering of latent means turned into the GMVAE prior's π, μ and σ².

    Parameters
    ----------
    weights
        Mixture weights π, shape ``(K,)``.
    means
        Component means, shape ``(K, d)``.
    variances
        Variances ``(K, d)`` (diagonal prior) or covariance matrices ``(K, d, d)``.
    responsibilities
        Each cell's membership of each component, shape ``(n_cells, K)``.
    log_likelihood
        Mean log-likelihood per cell of the mixture in the space it was fitted in (the UMAP
        for ``"umap"``, the latent otherwise): a label-free score to compare starts by.
    umap_seconds
        Seconds spent on the UMAP behind ``init="umap"``, most of that start's cost.
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    responsibilities: np.ndarray
    log_likelihood: float  # per cell, of the GaussianMixture on the space it was fitted in
    umap_seconds: float = 0.0  # of the embedding behind init="umap" (most of its cost)


def mixture_start(
    z: np.ndarray,
    n_components: int,
    init: Init = "umap",
    restarts: int = 5,
    umap_neighbors: int = 15,
    seed: int = 0,
    z_var: np.ndarray | None = None,
    covariance: Literal["diag", "full"] = "diag",
    umap_cells: int | None = None,
    placement_neighbors: int = 15,
    input_pcs: np.ndarray | None = None,
) -> MixtureStart:
    """A Gaussian mixture for the latent means ``z``, found without labels.

    Parameters
    ----------
    z
        Latent means, shape ``(n_cells, d)``.
    n_components
        Number of components K.
    init
        ``"umap"``: a full-covariance GaussianMixture on a 10-D UMAP of ``z`` (as N2D
        clusters), whose responsibilities weigh the moments of ``z``: the prior lives in the
        latent, not in the UMAP. UMAP makes curved clusters compact, which suits the
        curved clusters of an autoencoder's latent. ``"gmm"``: a GaussianMixture on ``z``
        itself with the prior's covariance, as VaDE :cite:p:`Jiang2017` starts; it suits a VAE's latent, whose
        KL to N(0, I) makes clusters close to Gaussian blobs. ``"kmeans"``: k-means on ``z``,
        each cell wholly in its cluster, and the clusters' moments; equal spheres, in
        seconds where the UMAP takes minutes on large data. ``"leiden"``: Leiden clusters
        of the latent's k-nearest-neighbour graph :cite:p:`Traag2019`, with the resolution
        searched until there are K of them, as scanpy users cluster; each cell wholly in its
        cluster, and the clusters' moments. A graph partition keeps small clusters that a
        mixture fitted to a UMAP splits or merges by chance of the UMAP's seed. ``"pca"``:
        the same Leiden clusters, of the neighbour graph of ``input_pcs`` instead, the
        principal components of what the encoder reads: the scanpy pipeline's clusters,
        whose moments in the latent set the prior. Unlike the latent, those do not change
        with the seed of the pretraining.
    restarts
        ``n_init`` of the GaussianMixture or of k-means; the best fit is kept.
    umap_neighbors
        ``n_neighbors`` of the UMAP, or of the ``"leiden"`` and ``"pca"`` graphs. More neighbours weigh the global structure more, which
        merges look-alike subclusters; scanpy's default is 15.
    seed
        Random state of the UMAP, the mixture, k-means and the subsample.
    z_var
        The posterior variances of q(z|x): each component's variances then gain its members'
        mean posterior variance, so that the components match the aggregate posterior
        rather than the spread of the means alone (too narrow components make the ELBO
        merge clusters).
    covariance
        The prior's covariance, ``"diag"`` or ``"full"``: variances or covariance matrices.
    umap_cells
        ``"umap"`` only: fit the UMAP and its mixture on at most this many random cells and
        place the others by their nearest fitted cells (``placement_neighbors``). UMAP's
        time grows faster than the number of cells, so this bounds the start's cost on
        large data, at some cost in how well the start separates clusters.
    placement_neighbors
        With ``umap_cells``: a cell outside the subsample takes the mean responsibilities
        of this many nearest fitted cells in the latent.
    input_pcs
        ``"pca"`` only: the points, one row per cell of ``z``, whose neighbour graph is
        clustered (see :func:`input_pcs`).

    Returns
    -------
    The start: weights, means, variances, responsibilities and the log-likelihood.
    """
    from sklearn.mixture import GaussianMixture

    check_start(init, umap_neighbors, umap_cells)
    if init == "gmm":
        gmm = GaussianMixture(
            n_components,
            covariance_type=covariance,
            n_init=restarts,
            reg_covar=1e-4,
            random_state=seed,
        ).fit(z)
        resp = gmm.predict_proba(z)
        start = MixtureStart(gmm.weights_, gmm.means_, gmm.covariances_, resp, gmm.score(z))
        return _with_posterior_variance(start, z_var)
    if init == "kmeans":
        from sklearn.cluster import KMeans

        labels = KMeans(n_components, n_init=restarts, random_state=seed).fit_predict(z)
        resp = np.eye(n_components)[labels]
        weights, means, variances = _moments(z, resp, covariance)
        start = MixtureStart(
            weights, means, variances, resp, _log_likelihood(z, weights, means, variances)
        )
        return _with_posterior_variance(start, z_var)
    if init in ("leiden", "pca"):
        if init == "pca" and (input_pcs is None or len(input_pcs) != len(z)):
            raise ValueError("init='pca' needs input_pcs, one row per row of z.")
        graph = z if init == "leiden" else input_pcs
        labels = leiden_clusters(graph, n_components, seed, umap_neighbors)
        resp = np.eye(n_components)[labels]
        weights, means, variances = _moments(z, resp, covariance)
        start = MixtureStart(
            weights, means, variances, resp, _log_likelihood(z, weights, means, variances)
        )
        return _with_posterior_variance(start, z_var)
    fitted = _subsample(z.shape[0], umap_cells, seed)
    began = time.perf_counter()
    embedding = umap_embedding(z[fitted], seed, umap_neighbors)
    umap_seconds = time.perf_counter() - began
    gmm = GaussianMixture(
        n_components, covariance_type="full", n_init=restarts, reg_covar=1e-4, random_state=seed
    ).fit(embedding)
    resp = _subsampled_responsibilities(
        z, fitted, gmm.predict_proba(embedding), placement_neighbors
    )
    start = MixtureStart(*_moments(z, resp, covariance), resp, gmm.score(embedding), umap_seconds)
    return _with_posterior_variance(start, z_var)


def input_pcs(
    matrix,
    library_target: float | None = None,
    log1p: bool = False,
    n_comps: int = INPUT_PCS,
    seed: int = 0,
) -> np.ndarray:
    """Principal components of a model's input, as scanpy's pipeline computes them.

    Each cell is scaled to ``library_target`` counts (scanpy's ``normalize_total``), then
    ``log1p`` is taken, as the encoder reads counts; then the first ``n_comps`` principal
    components (scanpy's ``pca``: centred implicitly, so that sparse data stay sparse).

    Parameters
    ----------
    matrix
        Cells by features: dense, sparse, or backed (read a block of rows at a time).
    library_target
        Scale each cell to this library size first (``None``: as it is).
    log1p
        Take ``log1p`` (counts); otherwise the values as they are (log or scaled data,
        images).
    n_comps
        Components kept (at most one fewer than the cells or the features).
    seed
        Random state of the solver.

    Returns
    -------
    The components, shape ``(n_cells, n_comps)``.
    """
    import scanpy as sc
    import scipy.sparse as sp

    from ._validation import row_blocks

    blocks = []
    for block in row_blocks(matrix):
        sparse = sp.issparse(block)
        block = sp.csr_matrix(block, dtype=np.float32) if sparse else np.asarray(block, np.float32)
        if library_target is not None:  # a diagonal product keeps a sparse block sparse
            library = np.asarray(block.sum(axis=1)).ravel()
            block = sp.diags(library_target / np.maximum(library, 1.0)) @ block
        if log1p:
            block = block.log1p() if sparse else np.log1p(block)
        blocks.append(block)
    values = sp.vstack(blocks, format="csr") if sp.issparse(blocks[0]) else np.concatenate(blocks)
    n_comps = int(min(n_comps, values.shape[0] - 1, values.shape[1] - 1))
    if n_comps < 1:  # a single feature (or cell) is its own component
        return values.toarray() if sp.issparse(values) else values
    return sc.pp.pca(values, n_comps=n_comps, random_state=seed)


def _moments(
    z: np.ndarray, resp: np.ndarray, covariance: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and variances (diagonal) or covariances (full) of a soft clustering of ``z``."""
    mass = resp.sum(axis=0) + 1e-10
    means = resp.T @ z / mass[:, None]
    if covariance == "full":
        centred = z[None, :, :] - means[:, None, :]  # (K, n, d)
        variances = np.einsum("nk,kni,knj->kij", resp, centred, centred) / mass[:, None, None]
        variances = variances + 1e-4 * np.eye(z.shape[1])
    else:
        variances = np.maximum(resp.T @ z**2 / mass[:, None] - means**2, 0) + 1e-4
    return mass / mass.sum(), means, variances


def _log_likelihood(
    z: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray
) -> float:
    """Mean log-likelihood per cell of ``z`` under a Gaussian mixture (diagonal or full)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    log_density = np.stack(
        [
            np.log(max(w, 1e-300))
            + multivariate_normal(m, v if v.ndim == 2 else np.diag(v), allow_singular=True).logpdf(
                z
            )
            for w, m, v in zip(weights, means, variances, strict=True)
        ],
        axis=-1,
    ).reshape(z.shape[0], -1)  # logpdf drops the cell axis when z has one row
    return float(logsumexp(log_density, axis=1).mean())


def _subsample(n_obs: int, umap_cells: int | None, seed: int) -> np.ndarray:
    """Sorted indices of the cells the UMAP start is fitted on: all, or ``umap_cells`` at random."""
    if umap_cells is None or umap_cells >= n_obs:
        return np.arange(n_obs)
    return np.sort(np.random.default_rng(seed).choice(n_obs, umap_cells, replace=False))


def _subsampled_responsibilities(
    z: np.ndarray, fitted: np.ndarray, resp_fitted: np.ndarray, n_neighbors: int
) -> np.ndarray:
    """Responsibilities of every cell from those of the cells the UMAP start was fitted on.

    A cell outside the subsample takes the mean responsibilities of its ``n_neighbors``
    nearest fitted cells in the latent, which is what UMAP's own neighbourhood graph
    would have tied it to.
    """
    if len(fitted) == z.shape[0]:
        return resp_fitted
    from sklearn.neighbors import NearestNeighbors

    resp = np.empty((z.shape[0], resp_fitted.shape[1]), dtype=resp_fitted.dtype)
    resp[fitted] = resp_fitted
    rest = np.setdiff1d(np.arange(z.shape[0]), fitted, assume_unique=True)
    k = min(n_neighbors, len(fitted))
    _, neighbours = NearestNeighbors(n_neighbors=k).fit(z[fitted]).kneighbors(z[rest])
    resp[rest] = resp_fitted[neighbours].mean(axis=1)
    return resp


def _with_posterior_variance(start: MixtureStart, z_var: np.ndarray | None) -> MixtureStart:
    if z_var is None:
        return start
    resp = start.responsibilities
    extra = resp.T @ z_var / (resp.sum(axis=0)[:, None] + 1e-10)
    if start.variances.ndim == 3:  # full covariances: the posterior variance adds to the diagonal
        extra = np.stack([np.diag(e) for e in extra])
    start.variances = start.variances + extra
    return start


def umap_embedding(
    z: np.ndarray, seed: int = 0, n_neighbors: int = 15, n_dims: int = 10
) -> np.ndarray:
    """An ``n_dims``-D UMAP of ``z`` with tight clusters (``min_dist=0``).

    The mixture start clusters a 10-D one; the choice of K scores a 2-D one.

    Parameters
    ----------
    z
        Points, shape ``(n, d)``.
    seed
        UMAP's random state (one thread, so that the embedding is reproducible).
    n_neighbors
        UMAP's ``n_neighbors`` (capped below the number of points).
    n_dims
        Dimension of the embedding (capped at ``n - 2``).
    """
    import umap

    n_neighbors = int(min(n_neighbors, max(2, z.shape[0] - 1)))
    reducer = umap.UMAP(
        n_components=min(n_dims, max(2, z.shape[0] - 2)),
        n_neighbors=n_neighbors,
        min_dist=0.0,
        random_state=seed,
        n_jobs=1,
    )
    return reducer.fit_transform(z)


def neighbour_graph(z: np.ndarray, n_neighbors: int = 15, seed: int = 0):
    """An AnnData holding scanpy's neighbour graph of ``z`` (neighbours capped below n)."""
    import anndata as ad
    import scanpy as sc

    graph = ad.AnnData(np.zeros((z.shape[0], 0), dtype=np.float32))
    graph.obsm["z"] = np.asarray(z)
    sc.pp.neighbors(
        graph,
        n_neighbors=int(min(n_neighbors, max(2, z.shape[0] - 1))),
        use_rep="z",
        random_state=seed,
    )
    return graph


def leiden_clusters(
    z: np.ndarray, n_clusters: int, seed: int = 0, n_neighbors: int = 15, exact: bool = True
) -> np.ndarray:
    """Leiden clusters of ``z``'s neighbour graph, with the resolution searched for K of them.

    The graph is scanpy's (:func:`scanpy.pp.neighbors` on ``z``); the resolution is
    bisected on a log scale (12 tries at most), as one finds K clusters with scanpy. If no
    resolution gives exactly K, the closest partition is kept, or with ``exact`` brought to
    K: the smallest cluster joins the one with the nearest centroid, or the largest is
    split in two by k-means, until there are K.

    Parameters
    ----------
    z
        Points, shape ``(n, d)``.
    n_clusters
        The number of clusters K.
    seed
        Random state of the graph and of Leiden.
    n_neighbors
        Neighbours of each point in the graph (capped below the number of points).
    exact
        Bring the closest partition to exactly K clusters (the mixture start needs K).

    Returns
    -------
    Labels from 0, shape ``(n,)``: ``0 .. K-1`` with ``exact``.
    """
    import scanpy as sc

    if not 1 <= n_clusters <= z.shape[0]:
        raise ValueError(f"n_clusters must be between 1 and {z.shape[0]}, got {n_clusters}.")
    graph = neighbour_graph(z, n_neighbors, seed)
    low, high, best = 0.01, 5.0, None
    for _ in range(12):
        resolution = float(np.sqrt(low * high))
        sc.tl.leiden(
            graph,
            resolution=resolution,
            random_state=seed,
            flavor="igraph",
            n_iterations=2,
            directed=False,
        )
        labels = graph.obs["leiden"].astype(int).to_numpy()
        found = labels.max() + 1
        if best is None or abs(found - n_clusters) < abs(best.max() + 1 - n_clusters):
            best = labels
        if found == n_clusters:
            break
        low, high = (resolution, high) if found < n_clusters else (low, resolution)
    return _to_k_clusters(z, best, n_clusters, seed) if exact else best


def _to_k_clusters(z: np.ndarray, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Merge the smallest cluster into its nearest, or split the largest, until there are K."""
    from sklearn.cluster import KMeans

    labels = labels.copy()
    while True:
        names, labels = np.unique(labels, return_inverse=True)
        n = len(names)
        if n == k:
            return labels
        sizes = np.bincount(labels)
        if n > k:
            centroids = np.stack([z[labels == c].mean(axis=0) for c in range(n)])
            small = int(sizes.argmin())
            distance = ((centroids - centroids[small]) ** 2).sum(axis=1)
            distance[small] = np.inf
            labels[labels == small] = int(distance.argmin())
        else:
            large = labels == int(sizes.argmax())
            if np.ptp(z[large], axis=0).max() > 0:
                halves = KMeans(2, n_init=5, random_state=seed).fit_predict(z[large])
            else:  # identical points: k-means cannot split them, so split by index
                halves = np.arange(int(large.sum())) % 2
            labels[np.flatnonzero(large)[halves == 1]] = n
