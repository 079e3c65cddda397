"""Images as AnnData: one observation per image, one feature per pixel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData


def pixel_names(image_shape: Sequence[int]) -> list[str]:
    """Feature names ``px_<row>_<col>`` (``px_<row>_<col>_<channel>`` for colour images)."""
    if len(image_shape) == 2:
        h, w = image_shape
        return [f"px_{r}_{c}" for r in range(h) for c in range(w)]
    h, w, ch = image_shape
    return [f"px_{r}_{c}_{k}" for r in range(h) for c in range(w) for k in range(ch)]


def images_to_anndata(
    images,
    labels: Sequence | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    label_key: str = "label",
) -> AnnData:
    """Turn an image stack into an AnnData with one flattened image per row.

    Parameters
    ----------
    images
        Array or torch tensor of shape ``(n, h, w)`` or ``(n, h, w, c)``. Integer images
        (e.g. uint8 0–255) are divided by their dtype's maximum; float images must already
        lie in [0, 1].
    labels
        Optional class of each image (integers or strings).
    class_names
        Names of integer classes: label ``i`` becomes ``class_names[i]``.
    label_key
        Column of ``obs`` that receives the labels.

    Returns
    -------
    AnnData with ``X`` float32 of shape ``(n, h*w[*c])``, ``var_names`` like ``px_3_17``,
    ``uns["image_shape"]`` and, with labels, a categorical ``obs[label_key]``.

    Examples
    --------
    >>> import numpy as np, mixvi
    >>> adata = mixvi.data.images_to_anndata(np.zeros((5, 28, 28), dtype=np.uint8), labels=[0, 1, 2, 1, 0])
    >>> adata.shape
    (5, 784)
    """
    if hasattr(images, "detach"):  # torch tensor
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must have shape (n, h, w) or (n, h, w, c); got {images.shape}.")
    if np.issubdtype(images.dtype, np.integer):
        x = images.astype(np.float32) / np.float32(np.iinfo(images.dtype).max)
    elif np.issubdtype(images.dtype, np.floating) or images.dtype == bool:
        x = images.astype(np.float32)
        if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise ValueError("Float images must be finite and lie in [0, 1]; rescale them first.")
    else:
        raise TypeError(f"Unsupported image dtype {images.dtype}.")
    n = images.shape[0]
    image_shape = tuple(int(s) for s in images.shape[1:])
    adata = AnnData(X=x.reshape(n, -1))
    adata.var_names = pixel_names(image_shape)
    adata.obs_names = [str(i) for i in range(n)]
    adata.uns["image_shape"] = image_shape
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape[0] != n:
            raise ValueError(f"{labels.shape[0]} labels for {n} images.")
        if class_names is not None:
            class_names = list(class_names)
            if not np.issubdtype(labels.dtype, np.integer):
                raise TypeError("class_names needs integer labels.")
            if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
                raise ValueError(
                    f"Labels must lie in [0, {len(class_names)}) to index class_names."
                )
            values = pd.Categorical.from_codes(labels, categories=class_names)
        else:
            values = pd.Categorical(labels.astype(str) if labels.dtype.kind in "iu" else labels)
        adata.obs[label_key] = pd.Categorical(values)
    return adata


def image_shape_of(adata: AnnData) -> tuple[int, ...]:
    """``adata.uns["image_shape"]``, checked against the number of features.

    Parameters
    ----------
    adata
        AnnData made by :func:`images_to_anndata` (or with ``uns["image_shape"]``).

    Raises
    ------
    ValueError
        If the AnnData holds no images (no ``uns["image_shape"]``) or the shape does not match.
    """
    shape = adata.uns.get("image_shape")
    if shape is None:
        raise ValueError(
            "This AnnData holds no images: adata.uns['image_shape'] is missing. Build it with "
            "mixvi.data.images_to_anndata, or set uns['image_shape'] = (h, w) if rows are "
            "flattened images."
        )
    shape = tuple(int(s) for s in np.asarray(shape).ravel())
    if int(np.prod(shape)) != adata.n_vars:
        raise ValueError(f"uns['image_shape'] = {shape} does not match {adata.n_vars} features.")
    return shape


def _stratified_subset(labels: np.ndarray, n_obs: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    index = np.arange(labels.shape[0])
    if n_obs >= labels.shape[0]:
        return index
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    stratify = labels if n_obs >= counts.size and counts.min() >= 2 else None
    chosen, _ = train_test_split(index, train_size=n_obs, stratify=stratify, random_state=seed)
    return np.sort(chosen)


def finish_images(
    adata: AnnData, n_obs: int | None, binarize: bool, seed: int, label_key: str = "label"
) -> AnnData:
    """A class-stratified subset of ``n_obs`` images, binarised at 0.5 if asked."""
    if n_obs is not None:
        if n_obs < 1:
            raise ValueError(f"n_obs must be >= 1, got {n_obs}.")
        keep = _stratified_subset(adata.obs[label_key].cat.codes.to_numpy(), n_obs, seed)
        adata = adata[keep].copy()
    if binarize:
        adata.X = (adata.X > 0.5).astype(np.float32)
    adata.uns["binarized"] = bool(binarize)
    return adata
