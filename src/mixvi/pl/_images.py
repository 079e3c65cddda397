"""Image plots, with scanpy's ``ax``, ``show``, ``save`` and ``return_fig`` conventions."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mixvi.data._images import image_shape_of

__all__ = ["cluster_examples", "images", "reconstructions", "samples"]


def _as_rows(x) -> np.ndarray:
    if hasattr(x, "toarray"):
        x = x.toarray()
    return np.asarray(x, dtype=np.float32)


def _grid(
    rows: list[np.ndarray],
    row_labels: Sequence[str],
    image_shape: tuple[int, ...],
    ncols: int,
    cmap: str,
    title: str | None,
    panel_size: float,
    out: dict,
) -> Figure | None:
    """Draw one row of images per group; empty cells are left blank.

    Without an ``ax`` each image gets an axes of its own; into a given ``ax`` the grid is
    drawn as one montage, with the row labels on its y axis.
    """
    ax = out["ax"]
    if ax is None:
        fig = _panels(rows, row_labels, image_shape, ncols, cmap, panel_size)
    else:
        fig = ax.figure
        _montage(ax, rows, row_labels, image_shape, ncols, cmap)
    if title:
        (fig.suptitle if ax is None else ax.set_title)(title)
    if ax is None:
        fig.tight_layout()
    return _output(fig, out)


def _panels(rows, row_labels, image_shape, ncols, cmap, panel_size) -> Figure:
    nrows = len(rows)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False
    )
    for r, (imgs, label) in enumerate(zip(rows, row_labels, strict=True)):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(imgs):
                ax.imshow(imgs[c].reshape(image_shape), cmap=cmap, vmin=0, vmax=1)
            if c == 0 and label:
                ax.set_ylabel(str(label), rotation=0, ha="right", va="center")
    return fig


def _montage(ax: Axes, rows, row_labels, image_shape, ncols, cmap) -> None:
    h, w = image_shape[:2]
    channels = image_shape[2:]
    # NaN shows as blank (the colour map's "bad"); a one-pixel gap keeps images apart
    canvas = np.full((len(rows) * (h + 1), ncols * (w + 1), *channels), np.nan, np.float32)
    for r, imgs in enumerate(rows):
        for c in range(min(ncols, len(imgs))):
            top, left = r * (h + 1), c * (w + 1)
            canvas[top : top + h, left : left + w] = imgs[c].reshape(image_shape)
    if channels:
        canvas = np.nan_to_num(canvas, nan=1.0)  # RGB has no colour map: gaps are white
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (h + 1) + h / 2 for r in range(len(rows))], [str(x) for x in row_labels])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _output(fig: Figure, out: dict) -> Figure | None:
    """Save, show and return as scanpy's plotting functions do."""
    if out["save"] is not None:
        fig.savefig(out["save"], dpi=100, bbox_inches="tight")
    show = out["show"]
    if show is None:  # scanpy's default: show, unless the caller wants to draw on
        show = out["ax"] is None and not out["return_fig"]
    if show:
        plt.show()
    return fig if out["return_fig"] or not show else None


def images(
    data: AnnData | np.ndarray,
    n: int = 16,
    groupby: str | None = None,
    ncols: int = 8,
    image_shape: tuple[int, ...] | None = None,
    cmap: str = "gray_r",
    title: str | None = None,
    seed: int = 0,
    panel_size: float = 1.0,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """A grid of images, optionally one row per group of an ``obs`` column.

    Parameters
    ----------
    data
        Image AnnData (with ``uns["image_shape"]``) or an array ``(n, h, w[, c])`` or
        ``(n, h*w)`` with ``image_shape``.
    n
        Number of images without ``groupby``.
    groupby
        Column of ``obs``: one row per category, ``ncols`` random members each.
    ncols
        Images per row.
    image_shape
        Shape of one image, for flattened arrays.
    cmap
        Colour map for grey images.
    title
        Figure title.
    seed
        Seed for picking group members.
    panel_size
        Inches per image (without ``ax``).
    ax
        Draw the grid into this axes, as one montage, instead of a new figure.
    show
        Show the figure; by default unless ``ax`` or ``return_fig`` is given.
    save
        Path to save the figure to.
    return_fig
        Return the :class:`~matplotlib.figure.Figure`.

    Returns
    -------
    The figure when ``return_fig`` is set or it was not shown, else ``None``.
    """
    out = {"ax": ax, "show": show, "save": save, "return_fig": return_fig}
    rng = np.random.default_rng(seed)
    if isinstance(data, AnnData):
        shape = image_shape_of(data)
        x = data.X
        if groupby is not None:
            if groupby not in data.obs:
                raise KeyError(f"Column {groupby!r} not in adata.obs.")
            groups = data.obs[groupby].astype("category")
            rows, labels = [], []
            for cat in groups.cat.categories:
                idx = np.flatnonzero((groups == cat).to_numpy())
                if idx.size == 0:
                    continue
                pick = np.sort(rng.choice(idx, size=min(ncols, idx.size), replace=False))
                rows.append(_as_rows(x[pick]))
                labels.append(f"{cat} (n={idx.size})")
            return _grid(rows, labels, shape, ncols, cmap, title, panel_size, out)
        flat = _as_rows(x[: min(n, data.n_obs)])
    else:
        arr = np.asarray(data, dtype=np.float32)
        if groupby is not None:
            raise ValueError("groupby needs an AnnData.")
        if arr.ndim == 2:
            if image_shape is None:
                raise ValueError("A flattened array needs image_shape=(h, w).")
            shape = tuple(image_shape)
        elif arr.ndim in (3, 4):
            shape = arr.shape[1:]
        else:
            raise ValueError(f"Cannot read images from an array of shape {arr.shape}.")
        flat = arr.reshape(arr.shape[0], -1)[:n]
    rows = [flat[i : i + ncols] for i in range(0, flat.shape[0], ncols)]
    return _grid(rows, [""] * len(rows), shape, ncols, cmap, title, panel_size, out)


def reconstructions(
    model,
    adata: AnnData | None = None,
    n: int = 8,
    indices: Sequence[int] | None = None,
    seed: int = 0,
    cmap: str = "gray_r",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Originals (top row) next to the model's reconstructions (bottom row).

    Parameters
    ----------
    model
        A trained mixvi model.
    adata
        Image AnnData set up for the model; defaults to the model's.
    n
        Number of images, picked at random unless ``indices`` is given.
    indices
        Observations to show.
    seed
        Seed for picking observations.
    cmap
        Colour map.
    ax
        Draw the grid into this axes, as one montage, instead of a new figure.
    show
        Show the figure; by default unless ``ax`` or ``return_fig`` is given.
    save
        Path to save the figure to.
    return_fig
        Return the :class:`~matplotlib.figure.Figure`.

    Returns
    -------
    The figure when ``return_fig`` is set or it was not shown, else ``None``.
    """
    adata = model.adata if adata is None else adata
    shape = image_shape_of(adata)
    if indices is None:
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(adata.n_obs, size=min(n, adata.n_obs), replace=False))
    indices = np.asarray(indices)
    original = _as_rows(adata.X[indices])
    recon = model.reconstruct(adata, indices=indices)
    return _grid(
        [original, recon],
        ["original", "reconstruction"],
        shape,
        len(indices),
        cmap,
        f"{type(model).__name__} reconstructions",
        1.0,
        {"ax": ax, "show": show, "save": save, "return_fig": return_fig},
    )


def samples(
    model,
    n: int = 8,
    groups: Sequence | None = None,
    condition: str | None = None,
    seed: int = 0,
    cmap: str = "gray_r",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Images generated by the model: one row per CVAE condition or per GMVAE component.

    Parameters
    ----------
    model
        A trained mixvi model on image data. For a CVAE, each row decodes ``n`` prior
        samples under one condition; the same z are used across rows, so a column shows
        one "style" rendered as every class. For a GMVAE, each row samples one mixture
        component. A plain VAE gives one row of prior samples.
    n
        Images per row.
    groups
        Conditions (CVAE) or component indices (GMVAE) to show; all by default.
    condition
        For a conditional GMVAE: the condition to decode under.
    seed
        Seed for the prior draws.
    cmap
        Colour map.
    ax
        Draw the grid into this axes, as one montage, instead of a new figure.
    show
        Show the figure; by default unless ``ax`` or ``return_fig`` is given.
    save
        Path to save the figure to.
    return_fig
        Return the :class:`~matplotlib.figure.Figure`.

    Returns
    -------
    The figure when ``return_fig`` is set or it was not shown, else ``None``.
    """
    shape = image_shape_of(model.adata)
    conditions = getattr(model, "conditions", None)
    n_components = getattr(model.module, "n_components", None)
    if n_components is not None:
        groups = list(range(n_components) if groups is None else groups)
        rows = [model.generate(n, component=int(k), condition=condition, seed=seed) for k in groups]
        labels = [f"component {k}" for k in groups]
    elif conditions is not None and len(conditions) > 0:  # [] on models without a condition
        groups = list(conditions if groups is None else groups)
        rows = [model.generate(n, condition=g, seed=seed) for g in groups]
        labels = [str(g) for g in groups]
    else:
        if groups is not None:
            raise ValueError(f"{type(model).__name__} has no conditions to group samples by.")
        rows, labels = [model.generate(n, seed=seed)], ["prior"]
    out = {"ax": ax, "show": show, "save": save, "return_fig": return_fig}
    return _grid(rows, labels, shape, n, cmap, f"{type(model).__name__} samples", 1.0, out)


def cluster_examples(
    adata: AnnData,
    cluster_key: str,
    n_per_cluster: int = 8,
    seed: int = 0,
    cmap: str = "gray_r",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool = False,
) -> Figure | None:
    """Random members of each cluster, one row per cluster, to judge clusters by eye.

    Parameters
    ----------
    adata
        Image AnnData.
    cluster_key
        Column of ``obs`` with the clusters (e.g. ``"leiden"`` or ``"gmvae_cluster"``).
    n_per_cluster
        Images per row.
    seed
        Seed for picking members.
    cmap
        Colour map.
    ax
        Draw the grid into this axes, as one montage, instead of a new figure.
    show
        Show the figure; by default unless ``ax`` or ``return_fig`` is given.
    save
        Path to save the figure to.
    return_fig
        Return the :class:`~matplotlib.figure.Figure`.

    Returns
    -------
    The figure when ``return_fig`` is set or it was not shown, else ``None``.
    """
    return images(
        adata,
        groupby=cluster_key,
        ncols=n_per_cluster,
        cmap=cmap,
        seed=seed,
        title=f"members of each {cluster_key}",
        ax=ax,
        show=show,
        save=save,
        return_fig=return_fig,
    )
