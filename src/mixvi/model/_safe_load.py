"""Loading saved models without running code from the file.

scvi-tools reads ``model.pt`` with ``torch.load(weights_only=False)``, i.e. full pickle:
a crafted file runs arbitrary code on load. Before scvi-tools touches a file, mixvi opens
it with a restricted unpickler (the "restricting globals" recipe of Python's pickle
documentation) that resolves only an allowlist of the types a saved model holds:
tensors, numpy arrays, dtypes and scalars, pandas frames and indexes, and plain
containers. torch's own ``weights_only=True`` cannot be used as is, because scvi-tools'
registry contains ``defaultdict`` objects that its unpickler refuses to fill. A file that
names anything else is refused before any of it has run.

mixvi writes no pandas objects into a model file: the training history (tables of
per-epoch values) is stored as plain arrays (:func:`plain_tables`) and rebuilt on load
(:func:`restore_tables`), so what a file holds does not depend on pandas' pickling
internals, which move between pandas releases. The pandas names in the allowlist only
serve files written by mixvi 0.1, which pickled the tables themselves.
"""

from __future__ import annotations

import importlib
import os
import pickle
import zipfile

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from mixvi._paths import plain_name

#: the key that marks a table stored as plain arrays
_TABLE = "__mixvi_table__"

_ALLOWED = {
    "collections": {"OrderedDict", "defaultdict"},
    "builtins": {
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "slice",
        "bytes",
        "bytearray",
        "int",
        "float",
        "complex",
        "bool",
        "str",
        "object",
    },
    "_codecs": {"encode"},  # how protocol-2 pickles spell bytes
    "torch._utils": {"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"},
    "torch": {"Size", "device", "float32", "float64", "int64", "int32", "bool"},
    "numpy": {"ndarray", "dtype"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy.dtypes": {
        f"{kind}DType"
        for kind in (
            "Bool",
            "Int8",
            "UInt8",
            "Int16",
            "UInt16",
            "Int32",
            "UInt32",
            "Int64",
            "UInt64",
            "Long",
            "ULong",
            "LongLong",
            "ULongLong",
            "Float16",
            "Float32",
            "Float64",
            "LongDouble",
            "Complex64",
            "Complex128",
            "Object",
            "Str",
            "Bytes",
            "Void",
        )
    },
    # files of mixvi 0.1 (pandas 2), which pickled the history tables themselves
    "pandas.core.frame": {"DataFrame"},
    "pandas.core.series": {"Series"},
    "pandas.core.indexes.base": {"Index", "_new_Index"},
    "pandas.core.indexes.range": {"RangeIndex"},
    "pandas.core.internals.managers": {"BlockManager", "SingleBlockManager"},
    "pandas._libs.internals": {"_unpickle_block"},
}
_RENAMED = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def plain_tables(value):
    """A DataFrame, or a dict holding DataFrames (a training history), as plain arrays.

    Anything else comes back as it is.
    """
    if isinstance(value, pd.DataFrame):
        return {
            _TABLE: {
                "columns": [str(c) for c in value.columns],
                "values": [np.asarray(value[c].to_numpy()) for c in value.columns],
                "index": np.asarray(value.index.to_numpy()),
                "index_name": None if value.index.name is None else str(value.index.name),
            }
        }
    if isinstance(value, dict) and any(isinstance(v, pd.DataFrame) for v in value.values()):
        return {k: plain_tables(v) for k, v in value.items()}
    return value


def _is_table(value) -> bool:
    return isinstance(value, dict) and set(value) == {_TABLE}


def restore_tables(value):
    """Undo :func:`plain_tables`: the stored tables become DataFrames again."""
    if _is_table(value):
        table = value[_TABLE]
        index = pd.Index(table["index"], name=table["index_name"])
        return pd.DataFrame(dict(zip(table["columns"], table["values"], strict=True)), index=index)
    if isinstance(value, dict) and any(_is_table(v) for v in value.values()):
        return {k: restore_tables(v) for k, v in value.items()}
    return value


class UnsafeModelFileError(ValueError):
    """A saved model file that names objects beyond tensors, arrays and tables."""


class CorruptModelFileError(ValueError):
    """A saved model directory that is missing files, truncated or not a model file."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        module = _RENAMED.get(module, module)
        if name in _ALLOWED.get(module, ()):
            return getattr(importlib.import_module(module), name)
        raise UnsafeModelFileError(f"the file names {module}.{name}")


class _RestrictedPickle:
    """What ``torch.load(pickle_module=...)`` needs: an Unpickler and a load function."""

    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


def model_file(dir_path: str | os.PathLike, prefix: str | None = None) -> str:
    """Path of the ``model.pt`` that ``model.save`` writes, with ``prefix`` kept a plain name."""
    return os.path.join(os.fspath(dir_path), plain_name(prefix or "", "prefix") + "model.pt")


def check_model_file(dir_path: str | os.PathLike, prefix: str | None = None) -> dict:
    """Open a saved model's ``model.pt`` safely and check that it is complete.

    Parameters
    ----------
    dir_path
        Directory written by ``model.save``.
    prefix
        File-name prefix used when saving.

    Returns
    -------
    The loaded dictionary (state dict, var_names, attributes).

    Raises
    ------
    UnsafeModelFileError
        If the file's pickle refers to anything outside the allowlist (it could run code).
    CorruptModelFileError
        If the file is missing, truncated, or lacks the parts of a saved model.
    """
    path = model_file(dir_path, prefix)
    if not os.path.isfile(path):
        raise CorruptModelFileError(
            f"No saved model at {path!r} (expected the file written by model.save)."
        )
    try:
        # the restricted unpickler, not full pickle: weights_only=False only lets torch accept it
        saved = torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle
        )
    except UnsafeModelFileError as error:
        raise UnsafeModelFileError(
            f"Refusing to load {path!r}: {error}, which a saved mixvi model never contains, "
            "so loading it could run code from the file."
        ) from None
    except (zipfile.BadZipFile, pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise CorruptModelFileError(f"{path!r} is not a complete model file ({error}).") from None
    missing = {"model_state_dict", "var_names", "attr_dict"} - set(
        saved if isinstance(saved, dict) else ()
    )
    if missing:
        raise CorruptModelFileError(
            f"{path!r} lacks {sorted(missing)}; it is not a saved mixvi model."
        )
    return saved


def check_var_names(saved: np.ndarray, adata: AnnData) -> None:
    """Raise unless ``adata`` holds the saved model's features, in its order."""
    current = np.asarray(adata.var_names).astype(str)
    if len(current) == len(saved) and (current == saved).all():
        return
    missing = np.setdiff1d(saved, current)
    extra = np.setdiff1d(current, saved)
    if len(missing) == 0 and len(extra) == 0:
        raise ValueError(
            "adata.var_names hold the model's features in another order; reorder with "
            "adata[:, model_var_names] before loading."
        )
    raise ValueError(
        f"adata.var_names do not match the model's features: {len(missing)} missing "
        f"(e.g. {list(missing[:3])}), {len(extra)} not in the model (e.g. {list(extra[:3])}). "
        "For query data, use prepare_query_anndata / load_query_data."
    )
