"""mixvi: autoencoders, VAEs, conditional VAEs and Gaussian-mixture VAEs for AnnData."""

from . import data, metrics, model, module, pl
from ._paths import PathOutsideDirectoryError
from ._settings import settings

__version__ = "0.1.0"

__all__ = [
    "data",
    "metrics",
    "model",
    "module",
    "pl",
    "settings",
    "PathOutsideDirectoryError",
    "__version__",
]
