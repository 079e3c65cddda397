"""Datasets as AnnData: MNIST, Fashion-MNIST, any image stack, and scanpy's bundled PBMCs."""

from ._idx import IDXError, read_idx, write_idx
from ._images import image_shape_of, images_to_anndata
from ._mnist import (
    FASHION_MNIST,
    MNIST,
    FetchedFiles,
    fashion_mnist,
    fetch_files,
    locate_files,
    mnist,
    mnist_5k,
)
from ._scrna import pbmc68k_reduced
from ._simulate import simulate_counts

__all__ = [
    "FASHION_MNIST",
    "IDXError",
    "MNIST",
    "FetchedFiles",
    "fashion_mnist",
    "fetch_files",
    "image_shape_of",
    "images_to_anndata",
    "locate_files",
    "mnist",
    "mnist_5k",
    "pbmc68k_reduced",
    "read_idx",
    "simulate_counts",
    "write_idx",
]
