"""The `mixvi train` batch job."""

import json

import anndata as ad
import numpy as np
import pytest

from mixvi.cli import main


def test_train_on_the_offline_default(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "vae", "--out", str(out), "--epochs", "3", "--seed", "1"]) == 0
    for name in ("adata.h5ad", "umap.png", "metrics.json", "model/model.pt"):
        assert (out / name).exists(), name
    adata = ad.read_h5ad(out / "adata.h5ad")
    assert adata.obsm["X_vae"].shape == (700, 10)
    assert "vae_leiden" in adata.obs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["likelihood"] == "normal"
    assert metrics["epochs"] == 3
    assert metrics["elbo"] < 0
    for key in ("leiden_nmi", "leiden_ari", "leiden_acc"):
        assert 0.0 < metrics[key] <= 1.0
    assert (out / "umap.png").stat().st_size > 10_000


def test_cvae_from_an_h5ad_with_counts(tmp_path, counts_adata):
    path = tmp_path / "counts.h5ad"
    counts_adata.obs["cell_type"] = np.tile(["t", "b"], 150)
    counts_adata.write_h5ad(path)
    out = tmp_path / "cvae"
    code = main(
        [
            "train",
            "--model",
            "cvae",
            "--data",
            str(path),
            "--layer",
            "counts",
            "--condition-key",
            "condition",
            "--label-key",
            "cell_type",
            "--epochs",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["likelihood"] == "nb"
    assert "leiden_ari" in metrics
    assert ad.read_h5ad(out / "adata.h5ad").obsm["X_cvae"].shape == (300, 10)


def test_ae_reports_reconstruction_error(tmp_path):
    out = tmp_path / "ae"
    assert main(["train", "--model", "ae", "--out", str(out), "--epochs", "2"]) == 0
    assert json.loads((out / "metrics.json").read_text())["reconstruction_error"] > 0


@pytest.mark.parametrize("init", ["umap", "gmm", "kmeans"])
def test_gmvae_writes_clusters_and_cluster_metrics(tmp_path, init):
    out = tmp_path / "gmvae"
    code = main(
        [
            "train",
            "--model",
            "gmvae",
            "--n-components",
            "6",
            "--epochs",
            "5",  # 2 pretraining, 3 of the GMVAE
            "--pretrain-epochs",
            "2",
            "--init",
            init,
            "--out",
            str(out),
        ]
    )
    assert code == 0
    adata = ad.read_h5ad(out / "adata.h5ad")
    assert adata.obsm["X_gmvae"].shape == (700, 10)
    assert adata.obsm["gmvae_probabilities"].shape == (700, 6)
    assert adata.obs["gmvae_cluster"].dtype == "category"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_components"] == 6
    assert metrics["init"] == init
    for key in ("gmvae_acc", "gmvae_nmi"):
        assert 0.0 <= metrics[key] <= 1.0
    assert -1.0 <= metrics["gmvae_ari"] <= 1.0  # chance-adjusted: slightly negative after 3 epochs
    assert isinstance(metrics["collapsed_components"], list)
    # the standard pipeline on the same cells, as a yardstick
    assert metrics["pca_leiden_n_clusters"] >= 2 and 0.3 < metrics["pca_leiden_ari"] <= 1.0


def test_the_demo_command_prints_where_each_file_is(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = [
        "train",
        "--model",
        "gmvae",
        "--n-components",
        "4",
        "--n-hidden",
        "16",
        "--n-layers",
        "1",
        "--epochs",
        "2",
        "--pretrain-epochs",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for name in ("adata.h5ad", "umap.png", "metrics.json", "model"):
        assert str((out / name).resolve()) in printed, name
    assert 'obs["gmvae_cluster"]' in printed
    assert "mixvi.model.GMVAE.load" in printed


@pytest.mark.parametrize(("flag", "mode"), [("on", "default"), ("cudagraphs", "reduce-overhead")])
def test_compile_reaches_the_training_plan(tmp_path, monkeypatch, flag, mode):
    import torch

    seen = []

    def record(module, **kwargs):  # stands in for torch.compile: the wiring, not the compiler
        seen.append(kwargs)
        return module

    monkeypatch.setattr(torch, "compile", record)
    out = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "gmvae",
        "--epochs",
        "5",  # 1 pretraining, 1 anchored (a quarter of the other 4), 3 free
        "--pretrain-epochs",
        "1",
        "--compile",
        flag,
    ]
    assert main([*argv, "--out", str(out)]) == 0
    # every phase of the GMVAE (pretraining, anchored, free) compiles with that mode
    assert len(seen) == 3 and all(k["mode"] == mode for k in seen)


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["train", "--model", "cvae", "--out", str(tmp_path / "x")]) == 2
    assert "--condition-key" in capsys.readouterr().err
    assert (
        main(["train", "--data", str(tmp_path / "missing.h5ad"), "--out", str(tmp_path / "y")]) == 2
    )
    assert "no such file" in capsys.readouterr().err


def test_unknown_model_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--model", "gan", "--out", str(tmp_path)])


@pytest.mark.slow
def test_n_components_auto_chooses_k_without_labels_and_records_it(tmp_path):
    import mixvi

    adata = mixvi.data.simulate_counts(
        n_cells=1_500, n_types=3, n_conditions=1, proportions=[50, 30, 20], seed=0
    )
    path = tmp_path / "three.h5ad"
    adata.write_h5ad(path)
    out = tmp_path / "auto"
    argv = ["train", "--model", "gmvae", "--data", str(path), "--layer", "counts"]
    argv += ["--label-key", "cell_type", "--n-components", "auto", "--k-range", "2", "6"]
    assert main([*argv, "--epochs", "124", "--pretrain-epochs", "60", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    choice = metrics["n_components_choice"]
    assert metrics["n_components"] == choice["chosen"] == 3
    assert sorted(int(k) for k in choice["score"]) == [2, 3, 4, 5, 6]
    assert max(choice["score"], key=choice["score"].get) == "3"
    assert "silhouette" in choice["criterion"]
    assert ad.read_h5ad(out / "adata.h5ad").obsm["gmvae_probabilities"].shape == (1_500, 3)


def test_n_components_auto_refuses_a_bad_range_before_training(tmp_path, capsys):
    out = tmp_path / "bad"
    argv = ["train", "--model", "gmvae", "--n-components", "auto", "--k-range", "5", "2"]
    assert main([*argv, "--out", str(out)]) != 0
    assert "--k-range 5 2" in capsys.readouterr().err
    assert not (out / "model").exists()
    with pytest.raises(SystemExit):
        main(["train", "--model", "gmvae", "--n-components", "many", "--out", str(out)])


def test_umap_cells_reaches_the_mixture_start(tmp_path, monkeypatch):
    from mixvi.model import _mixture_start

    embedded = []
    real = _mixture_start.umap_embedding

    def record(z, *args, **kwargs):  # the real UMAP, counting the cells it is fitted on
        embedded.append(len(z))
        return real(z, *args, **kwargs)

    monkeypatch.setattr(_mixture_start, "umap_embedding", record)
    out = tmp_path / "sub"
    argv = ["train", "--model", "gmvae", "--n-components", "4", "--init", "umap"]
    argv += ["--umap-cells", "300", "--epochs", "2", "--pretrain-epochs", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    assert embedded == [300]  # of pbmc68k_reduced's 700 cells
    assert json.loads((out / "metrics.json").read_text())["umap_cells"] == 300
    assert ad.read_h5ad(out / "adata.h5ad").obsm["gmvae_probabilities"].shape == (700, 4)


@pytest.mark.parametrize("value", ["1", "many", "2.5"])
def test_umap_cells_is_refused_by_the_parser(tmp_path, value, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "gmvae", "--umap-cells", value, "--out", str(tmp_path / "x")])
    assert "--umap-cells" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_pbmc3k_sets_the_gmvae_beside_the_standard_pipelines(tmp_path):
    # what `make demo` runs, at 2 epochs: real counts, and every baseline on the same cells
    out = tmp_path / "demo"
    argv = ["train", "--model", "gmvae", "--dataset", "pbmc3k", "--n-components", "8"]
    argv += ["--epochs", "2", "--pretrain-epochs", "1", "--scvi-baseline", "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == "pbmc3k" and metrics["likelihood"] == "nb"
    assert (metrics["n_obs"], metrics["n_vars"]) == (2_700, 2_000)  # the highly variable genes
    assert metrics["label_key"] == "cell_type"
    # every baseline at the GMVAE's K: k-means directly, Leiden by bisecting its resolution
    assert metrics["pca_kmeans_n_clusters"] == 8
    # (or the closest count the bisection found: scVI's latent after 2 epochs has little shape)
    assert metrics["pca_leiden_n_clusters"] == 8 and abs(metrics["scvi_leiden_n_clusters"] - 8) <= 1
    for name in ("gmvae", "pca_leiden", "pca_kmeans", "scvi_leiden"):
        assert -1.0 <= metrics[f"{name}_ari"] <= 1.0 and 0.0 <= metrics[f"{name}_nmi"] <= 1.0
    # the PCA pipeline finds the cell types of PBMC 3k, whatever 2 epochs did to the models
    assert metrics["pca_leiden_ari"] > 0.5 and metrics["pca_kmeans_ari"] > 0.4
    adata = ad.read_h5ad(out / "adata.h5ad")
    # --n-latent not given: the GMVAE's count default (linear maps to 50 dimensions)
    assert "counts" in adata.layers and adata.obsm["X_gmvae"].shape == (2_700, 50)


def test_the_scvi_baseline_needs_labels_and_counts(tmp_path, capsys):
    argv = ["train", "--model", "vae", "--epochs", "1", "--scvi-baseline"]
    # pbmc68k_reduced holds scaled values: no count likelihood, refused before training
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    assert "--scvi-baseline needs" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    with pytest.raises(SystemExit):  # one source of data
        main([*argv, "--dataset", "pbmc3k", "--data", "x.h5ad", "--out", str(tmp_path / "b")])
