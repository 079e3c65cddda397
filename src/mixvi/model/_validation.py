"""Checks run on user data before anything is registered or trained.

Each check raises before the AnnData is touched, so a failed call leaves it unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

# rows per chunk when scanning dense matrices, so a check never allocates a full-size mask
_CHUNK = 16_384


def get_matrix(adata: AnnData, layer: str | None):
    """Return ``adata.X`` or ``adata.layers[layer]``, raising a clear error if it is missing."""
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty (None); pass `layer=` to use one of adata.layers.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} is not in adata.layers (available: {layer_names(adata)}).")
    return adata.layers[layer]


def layer_names(adata: AnnData) -> list[str]:
    """The names of ``adata.layers``, without the ``None`` that anndata 0.13 lists for ``.X``."""
    return [key for key in adata.layers.keys() if key is not None]


def _where(layer: str | None) -> str:
    return "adata.X" if layer is None else f"adata.layers[{layer!r}]"


def row_blocks(matrix) -> Iterable:
    """``matrix`` a block of rows at a time: backed (on-disk) matrices are never read whole."""
    if hasattr(matrix, "to_memory") and not hasattr(matrix, "shape"):
        matrix = matrix.to_memory()
    for start in range(0, matrix.shape[0], _CHUNK):
        yield matrix[start : start + _CHUNK]


def _chunks(matrix) -> Iterable[np.ndarray]:
    """The stored values of ``matrix``, chunk by chunk (only non-zeros of sparse matrices)."""
    if sp.issparse(matrix):
        yield np.asarray(matrix.data)
        return
    for block in row_blocks(matrix):
        yield np.asarray(block.data) if sp.issparse(block) else np.asarray(block)


def row_sums(matrix) -> np.ndarray:
    """Each row's sum (a cell's library size), reading backed matrices a block at a time."""
    return np.concatenate([np.asarray(block.sum(axis=1)).ravel() for block in row_blocks(matrix)])


def check_shape(adata: AnnData) -> None:
    """Refuse an AnnData with no observations or no features."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"AnnData has shape {adata.shape}; mixvi needs at least one observation and one feature."
        )


def check_finite(adata: AnnData, layer: str | None) -> None:
    """Raise ``ValueError`` if the data contain NaN or infinite values."""
    matrix = get_matrix(adata, layer)
    n_bad = 0
    for values in _chunks(matrix):
        if np.issubdtype(values.dtype, np.floating) or np.issubdtype(
            values.dtype, np.complexfloating
        ):
            n_bad += int((~np.isfinite(values)).sum())
    if n_bad:
        raise ValueError(
            f"{_where(layer)} contains {n_bad} NaN or infinite value(s). Remove or impute them "
            "(e.g. filter cells/genes, or fill with 0) before setting up the model."
        )


def check_counts(adata: AnnData, layer: str | None, likelihood: str) -> None:
    """Raise ``ValueError`` unless the data are non-negative integers (count likelihoods)."""
    matrix = get_matrix(adata, layer)
    n_negative = n_fractional = 0
    for values in _chunks(matrix):
        n_negative += int((values < 0).sum())
        if np.issubdtype(values.dtype, np.floating):
            n_fractional += int((values != np.round(values)).sum())
    hint = (
        "Count likelihoods need raw counts: pass `layer=` with the raw counts in "
        "setup_anndata, or use likelihood='normal' for log-normalised or scaled data."
    )
    if n_negative:
        raise ValueError(
            f"The {likelihood!r} likelihood needs non-negative counts, but {_where(layer)} has "
            f"{n_negative} negative value(s). {hint}"
        )
    if n_fractional:
        raise ValueError(
            f"The {likelihood!r} likelihood needs integer counts, but {_where(layer)} has "
            f"{n_fractional} non-integer value(s). {hint}"
        )


def check_unit_interval(adata: AnnData, layer: str | None) -> None:
    """Raise ``ValueError`` unless all values lie in [0, 1] (Bernoulli likelihood)."""
    matrix = get_matrix(adata, layer)
    n_out = sum(int(((v < 0) | (v > 1)).sum()) for v in _chunks(matrix))
    if n_out:
        raise ValueError(
            f"The 'bernoulli' likelihood needs values in [0, 1], but {_where(layer)} has {n_out} "
            "value(s) outside it. Rescale (e.g. divide 8-bit images by 255) or use "
            "likelihood='normal'."
        )


def check_obs_keys(adata: AnnData, keys: Iterable[str | None], what: str = "column") -> None:
    """Raise ``KeyError`` naming every key that is not a column of ``adata.obs``."""
    missing = [k for k in keys if k is not None and k not in adata.obs.columns]
    if missing:
        raise KeyError(
            f"{what.capitalize()} {', '.join(map(repr, missing))} not found in adata.obs "
            f"(columns: {list(adata.obs.columns)})."
        )


def check_categories(adata: AnnData, keys: Iterable[str | None]) -> None:
    """Refuse covariate columns with missing values; warn about a condition with one category.

    scvi-tools would otherwise map a missing value to a category code of its own, and the
    cells without a condition would train as if they shared one.
    """
    import warnings

    for key in keys:
        if key is None:
            continue
        column = adata.obs[key]
        n_missing = int(column.isna().sum())
        if n_missing:
            raise ValueError(
                f"adata.obs[{key!r}] has {n_missing} missing value(s) (NaN or None); give those "
                "cells a category (e.g. 'unknown') or remove them before setting up the model."
            )
        if column.nunique() == 1:
            warnings.warn(
                f"adata.obs[{key!r}] has a single category ({column.iloc[0]!r}): the model trains, "
                "but this covariate does nothing.",
                UserWarning,
                stacklevel=4,
            )


def validate_for_setup(adata: AnnData, layer: str | None, obs_keys: Iterable[str | None]) -> None:
    """All checks that ``setup_anndata`` runs before registering anything."""
    keys = list(obs_keys)
    check_shape(adata)
    check_obs_keys(adata, keys)
    check_categories(adata, keys)
    check_finite(adata, layer)


def validate_for_likelihood(adata: AnnData, layer: str | None, likelihood: str) -> None:
    """Checks tied to the observation model, run when the model is created."""
    if likelihood in ("nb", "zinb", "poisson"):
        check_counts(adata, layer, likelihood)
    elif likelihood == "bernoulli":
        check_unit_interval(adata, layer)


def infer_likelihood(adata: AnnData, layer: str | None = None) -> str:
    """Suggest a likelihood from the values: counts → ``"nb"``, [0, 1] → ``"bernoulli"``, else ``"normal"``.

    Parameters
    ----------
    adata
        The data.
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.

    Returns
    -------
    One of ``"nb"``, ``"bernoulli"`` and ``"normal"``.
    """
    matrix = get_matrix(adata, layer)
    is_int = nonneg = unit = True
    for values in _chunks(matrix):
        if values.size == 0:
            continue
        nonneg &= bool((values >= 0).all())
        unit &= nonneg and bool((values <= 1).all())
        is_int &= nonneg and bool((values == np.round(values)).all())
    if is_int and nonneg and not unit:
        return "nb"
    if unit:
        return "bernoulli"
    return "normal"


def warn_small_conditions(
    adata: AnnData | None, condition_key: str | None, n_components: int
) -> None:
    """Warn when a condition has fewer cells than components: it cannot hold every cluster."""
    if condition_key is None or adata is None:
        return
    counts = adata.obs[condition_key].value_counts()
    small = counts[counts < n_components]
    if len(small):
        named = ", ".join(f"{name!r} ({int(n)} cells)" for name, n in small.items())
        warnings.warn(
            f"Condition(s) {named} of adata.obs[{condition_key!r}] have fewer cells than "
            f"n_components={n_components}: such a condition cannot hold every cluster, and a "
            "type seen only there is hard to tell from the condition's effect.",
            UserWarning,
            stacklevel=4,
        )
