"""Single-cell datasets that ship with scanpy (thin wrappers, no readers of our own)."""

from __future__ import annotations

from anndata import AnnData


def pbmc68k_reduced() -> AnnData:
    """Scanpy's bundled ``pbmc68k_reduced``: 700 PBMCs × 765 genes, available offline.

    ``X`` holds scaled (z-scored) values, not counts, so use ``likelihood="normal"``.
    Cell types are in ``obs["bulk_labels"]`` (10 types). For your own data, use scanpy's
    readers (:func:`scanpy.read_h5ad`, :func:`scanpy.read_10x_h5`, :func:`scanpy.read_10x_mtx`).

    Returns
    -------
    AnnData with ``uns["mixvi_values"] == "scaled"``.
    """
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    adata.uns["mixvi_values"] = "scaled"
    return adata
