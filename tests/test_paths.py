"""File names stay inside the directories they name; downloads are checked by SHA-256."""

import hashlib
import http.server
import shutil
import threading
from functools import partial

import numpy as np
import pytest
from conftest import QUIET

import mixvi
from mixvi import PathOutsideDirectoryError
from mixvi._paths import output_path, plain_name
from mixvi.cli import main


@pytest.mark.parametrize("name", ["../evil", "a/b", "/etc/passwd", "..", ".", "x/../../y"])
def test_names_with_directories_are_refused(name):
    with pytest.raises(PathOutsideDirectoryError, match="plain file name"):
        plain_name(name, "prefix")


@pytest.mark.parametrize("name", ["", "run1_", "model.pt", "a..b"])
def test_plain_names_pass(name):
    assert plain_name(name, "prefix") == name


def test_output_path_refuses_a_link_out_of_the_directory(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").symlink_to(outside)
    with pytest.raises(PathOutsideDirectoryError, match="outside"):
        output_path(out, "metrics.json")
    (out / "inner.txt").write_text("")
    (out / "link.txt").symlink_to(out / "inner.txt")
    assert output_path(out, "link.txt") == out / "link.txt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    adata = mixvi.data.pbmc68k_reduced()
    mixvi.model.VAE.setup_anndata(adata)
    model = mixvi.model.VAE(adata, n_hidden=16)
    model.train(max_epochs=1, **QUIET)
    path = tmp_path_factory.mktemp("saved") / "vae"
    model.save(path)
    return model, adata, path


def test_save_and_load_refuse_prefixes_that_leave_the_directory(trained, tmp_path):
    model, adata, path = trained
    target = tmp_path / "dir"
    with pytest.raises(PathOutsideDirectoryError):
        model.save(target, prefix="../escaped_")
    assert not (tmp_path / "escaped_model.pt").exists()
    shutil.copy(path / "model.pt", tmp_path / "escaped_model.pt")
    with pytest.raises(PathOutsideDirectoryError):
        mixvi.model.VAE.load(target, adata=adata, prefix="../escaped_")


def test_save_does_not_write_through_a_link_out_of_the_directory(trained, tmp_path):
    model, _, _ = trained
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"precious")
    target = tmp_path / "dir"
    target.mkdir()
    (target / "model.pt").symlink_to(victim)
    with pytest.raises(PathOutsideDirectoryError, match="outside"):
        model.save(target, overwrite=True)
    assert victim.read_bytes() == b"precious"


def test_cli_refuses_outputs_linked_out_of_the_directory_before_training(tmp_path, capsys):
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").symlink_to(victim)
    assert main(["train", "--model", "vae", "--out", str(out), "--epochs", "1"]) == 2
    assert "outside" in capsys.readouterr().err
    assert victim.read_text() == "{}"
    assert not (out / "model").exists()  # it stopped before training, not after


def test_cli_refuses_an_existing_model_without_overwrite_before_training(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    assert main(["train", "--model", "vae", "--out", str(tmp_path), "--epochs", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()


@pytest.fixture
def http_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_backup_url_downloads_are_checked_by_sha256(trained, tmp_path, http_server):
    model, adata, path = trained
    served, url = http_server
    shutil.copy(path / "model.pt", served / "model.pt")
    digest = hashlib.sha256((path / "model.pt").read_bytes()).hexdigest()

    wrong = tmp_path / "wrong"
    with pytest.raises(ValueError, match="(?i)hash"):
        mixvi.model.VAE.load(
            wrong, adata=adata, backup_url=f"{url}/model.pt", backup_sha256="0" * 64
        )
    assert not (wrong / "model.pt").exists()

    right = tmp_path / "right"
    loaded = mixvi.model.VAE.load(
        right, adata=adata, backup_url=f"{url}/model.pt", backup_sha256=digest
    )
    np.testing.assert_allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-6
    )
