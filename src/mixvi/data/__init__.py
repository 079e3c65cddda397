"""Datasets as AnnData: MNIST, Fashion-MNIST, any image stack, real single-cell counts."""

from ._counts import KANG18, PBMC3K, ChecksumError, fetch_count_file, kang18, pbmc3k
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
    "ChecksumError",
    "FASHION_MNIST",
    "IDXError",
    "KANG18",
    "MNIST",
    "FetchedFiles",
    "fashion_mnist",
    "fetch_files",
    "image_shape_of",
    "images_to_anndata",
    "locate_files",
    "mnist",
    "mnist_5k",
    "PBMC3K",
    "pbmc3k",
    "kang18",
    "fetch_count_file",
    "pbmc68k_reduced",
    "read_idx",
    "simulate_counts",
    "write_idx",
]
