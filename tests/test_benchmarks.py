"""The benchmark scripts run end to end in their smoke mode (CI proves they work, not their numbers)."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
RESULTS = BENCHMARKS / "results"


def _load(name: str):
    # importable by name: dataclasses and spawned worker processes look the module up
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def test_quality_benchmark_smoke(tmp_path):
    quality = _load("quality")
    summary = quality.main(["--smoke", "--seeds", "0", "1", "--out", str(tmp_path)])
    assert set(summary) == {"fashion_mnist", "mnist5k", "pbmc", "pbmc3k", "kang", "conditional"}
    for name, methods in summary.items():
        assert set(methods) == set(quality.dataset_methods(name))
        for scores in methods.values():
            assert scores["n_seeds"] == 2
            assert all(0 <= scores[k][0] <= 1 for k in ("acc", "nmi"))
            assert -1 <= scores["ari"][0] <= 1
    saved = json.loads((tmp_path / "quality_smoke.json").read_text())
    assert saved["meta"]["smoke"] is True and "--smoke" in saved["meta"]["command"]
    assert set(saved["per_seed"]["mnist5k"]) == {"0", "1"}
    assert np.isfinite(saved["per_seed"]["pbmc"]["0"]["gmvae"]["elbo"])
    table = (tmp_path / "quality_smoke.md").read_text()
    assert "| mnist5k | gmvae |" in table and "n/a (smoke)" in table
    assert "- pbmc: labels guided a setting:" in table and "- mnist5k: labels guided" not in table
    for guided in ("fashion_mnist", "conditional"):
        assert f"- {guided}: labels guided a setting:" in table
    assert "- pbmc3k: labels guided" not in table and "- kang: labels guided" not in table
    # the conditional counts: scVI among the baselines, and the clusters scored against the condition
    assert "| conditional | scvi_leiden |" in table and "| conditional | cvae_leiden |" in table
    for scores in summary["conditional"].values():
        assert 0 <= scores["condition_nmi"][0] <= 1 and -1 <= scores["condition_ari"][0] <= 1
    assert "condition ARI" in table and "condition_ari" not in summary["pbmc"]["gmvae"]
    # real counts: scVI among the baselines, and Kang's clusters scored against stimulation
    assert "| pbmc3k | scvi_leiden |" in table and "| kang | scvi_kmeans |" in table
    assert "condition_ari" in summary["kang"]["gmvae"]
    assert "condition_ari" not in summary["pbmc3k"]["gmvae"]
    assert "- pbmc3k: GMVAE mean ARI" in table and "- kang: GMVAE mean NMI" in table
    # every dataset's headline score is set against its best baseline in the same table
    assert "- pbmc: GMVAE mean ARI" in table and "- mnist5k: GMVAE mean ACC" in table
    # a label-tuned dataset's target lines say it does not count; the others' do not
    targets = [line for line in table.splitlines() if "GMVAE mean" in line]
    guided = ("- pbmc:", "- fashion_mnist:", "- conditional:")
    assert all(
        line.endswith("(labels guided a setting: does not count)") == line.startswith(guided)
        for line in targets
    )
    assert "- conditional: GMVAE mean ARI" in table and "best baseline" in table
    # a row per dataset with the K chosen without labels, never counted as a baseline
    assert "K chosen without labels" in table
    for name, methods in summary.items():
        auto = methods["gmvae_auto_k"]
        assert len(auto["chosen_k_per_seed"]) == 2
        assert all(k in quality.K_CANDIDATES for k in auto["chosen_k_per_seed"])
        assert f"| {name} | {auto['true_k'][0]:.0f} |" in table
    assert "best baseline in this table, gmvae_auto_k" not in table
    # the GMVAE's seconds per phase, set against the VAE's whole fit in the same run
    phases = summary["mnist5k"]["gmvae"]["phase_seconds"]
    assert phases["pretraining"] > 0 and phases["umap"] <= phases["mixture_start"]
    assert "time per phase" in table and "| mnist5k | " in table.split("time per phase")[1]


def test_phase_table_sets_the_gmvae_with_and_without_its_start_against_the_vae():
    quality = _load("quality")
    phases = {
        "pretraining": 30.0,
        "mixture_start": 20.0,
        "umap": 15.0,
        "anchored": 25.0,
        "free": 25.0,
    }
    summary = {
        "images": {
            "gmvae": {"phase_seconds": phases, "seconds": [100.0]},
            "vae_kmeans": {"seconds": [20.0]},
        },
        # count datasets have no vae_kmeans row: the VAE's fit is vae_leiden's
        "counts": {
            "gmvae": {"phase_seconds": phases, "seconds": [100.0]},
            "vae_leiden": {"seconds": [40.0]},
        },
        "alone": {"gmvae": {"phase_seconds": phases, "seconds": [100.0]}},
    }
    rows = {
        line.split(" | ")[0][2:]: line
        for line in quality.phase_lines(summary)
        if line.startswith("| ")
    }
    assert rows["images"].endswith("| 100 | 20 | 5.0 | 4.0 |")
    assert rows["counts"].endswith("| 100 | 40 | 2.5 | 2.0 |")
    assert rows["alone"].endswith("| n/a | n/a | n/a |")


def test_quality_runs_over_other_seeds_merge_into_the_table_of_one_run(tmp_path):
    import pytest

    quality = _load("quality")
    common = ["--smoke", "--datasets", "pbmc", "--methods", "kmeans_pca50", "--out", str(tmp_path)]
    quality.main([*common, "--seeds", "0", "--name", "a"])
    quality.main([*common, "--seeds", "1", "--name", "b"])
    together = quality.main([*common, "--seeds", "0", "1", "--name", "both"])
    parts = [str(tmp_path / "a_smoke.json"), str(tmp_path / "b_smoke.json")]
    merged = quality.main(["--merge", *parts, "--out", str(tmp_path), "--name", "merged"])
    # the same scores (k-means is seeded); the seconds are each run's own
    for key in ("acc", "nmi", "ari", "n_seeds"):
        assert merged["pbmc"]["kmeans_pca50"][key] == together["pbmc"]["kmeans_pca50"][key]
    saved = json.loads((tmp_path / "merged.json").read_text())
    assert saved["meta"]["seeds"] == [0, 1] and len(saved["meta"]["merged"]) == 2
    assert "--name a" in saved["meta"]["command"] and "--name b" in saved["meta"]["command"]
    with pytest.raises(ValueError, match="seed 0 kmeans_pca50 is in more than one"):
        quality.main(["--merge", parts[0], parts[0], "--out", str(tmp_path), "--name", "twice"])
    # a finished run's table is not marked partial; one written while the run goes on is
    first = json.loads((tmp_path / "a_smoke.json").read_text())
    assert first["meta"]["seeds"] == [0] and "partial" not in (tmp_path / "a_smoke.md").read_text()
    text = quality.markdown(merged, first["meta"] | {"done": 1, "planned": 2}, [])
    assert "- partial: 1 of 2 (dataset, seed) runs done" in text


def test_quality_merge_takes_named_methods_from_each_run_and_says_where_they_came_from(tmp_path):
    quality = _load("quality")
    common = ["--smoke", "--datasets", "pbmc", "--seeds", "0", "--out", str(tmp_path)]
    quality.main([*common, "--methods", "kmeans_pca50", "pca_leiden", "--name", "a"])
    quality.main([*common, "--methods", "pca_leiden", "--name", "b"])
    a, b = str(tmp_path / "a_smoke.json"), str(tmp_path / "b_smoke.json")
    # both runs hold pca_leiden for seed 0: taking it from b only resolves the clash
    merged = quality.main(
        ["--merge", f"{a}:kmeans_pca50", b, "--out", str(tmp_path), "--name", "mixed"]
    )
    assert set(merged["pbmc"]) == {"kmeans_pca50", "pca_leiden"}
    saved = json.loads((tmp_path / "mixed.json").read_text())
    rows = {src["file"]: src["rows"] for src in saved["meta"]["sources"]}
    assert rows == {
        "a_smoke.json": {"pbmc": ["kmeans_pca50"]},
        "b_smoke.json": {"pbmc": ["pca_leiden"]},
    }
    assert "from `a_smoke.json`" in (tmp_path / "mixed.md").read_text()
    with pytest.raises(ValueError, match="pbmc seed 0 pca_leiden is in more than one"):
        quality.main(["--merge", a, b, "--out", str(tmp_path), "--name", "clash"])
    # dataset/method picks a method of one dataset only
    quality.main(
        [
            "--merge",
            f"{a}:mnist5k/pca_leiden,pbmc/kmeans_pca50",
            "--out",
            str(tmp_path),
            "--name",
            "one",
        ]
    )
    saved = json.loads((tmp_path / "one.json").read_text())
    assert saved["meta"]["sources"][0]["rows"] == {"pbmc": ["kmeans_pca50"]}


def test_a_merged_table_merged_again_names_the_runs_and_sums_their_time(tmp_path):
    quality = _load("quality")
    common = ["--smoke", "--datasets", "pbmc", "--out", str(tmp_path)]
    quality.main([*common, "--seeds", "0", "--methods", "kmeans_pca50", "--name", "a"])
    quality.main([*common, "--seeds", "0", "--methods", "pca_leiden", "--name", "b"])
    quality.main([*common, "--seeds", "1", "--methods", "kmeans_pca50", "--name", "c"])
    a, b, c = (str(tmp_path / f"{stem}_smoke.json") for stem in "abc")
    quality.main(["--merge", a, b, "--out", str(tmp_path), "--name", "ab"])
    # b's rows are left out of the second merge: b is not named as a source
    quality.main(
        ["--merge", f"{tmp_path / 'ab.json'}:kmeans_pca50", c, "--out", str(tmp_path)]
        + ["--name", "abc"]
    )
    saved = json.loads((tmp_path / "abc.json").read_text())
    assert [src["file"] for src in saved["meta"]["sources"]] == ["a_smoke.json", "c_smoke.json"]
    # the runs' own commands, then this merge: not the first merge's command
    assert "--name a " in saved["meta"]["command"] and saved["meta"]["command"].count("then") == 1
    walls = [json.loads(Path(p).read_text())["meta"]["wall_seconds"] for p in (a, c)]
    assert saved["meta"]["wall_seconds"] == pytest.approx(sum(walls))
    assert "summed over the 2 runs" in (tmp_path / "abc.md").read_text()
    assert set(saved["per_seed"]["pbmc"]) == {"0", "1"}
    # each run's own seeds, in the header too: both gave kmeans_pca50, for other seeds
    assert [src["seeds"] for src in saved["meta"]["sources"]] == [[0], [1]]
    text = (tmp_path / "abc.md").read_text()
    assert "kmeans_pca50 (seed 0)" in text and "kmeans_pca50 (seed 1)" in text
    # merged a third time, a run is not credited with the seeds of another run's rows
    quality.main(["--merge", str(tmp_path / "abc.json"), "--out", str(tmp_path), "--name", "again"])
    again = json.loads((tmp_path / "again.json").read_text())
    assert [src["seeds"] for src in again["meta"]["sources"]] == [[0], [1]]


def test_speed_benchmark_smoke(tmp_path):
    speed = _load("speed")
    results = speed.main(["--smoke", "--accelerator", "cpu", "--out", str(tmp_path)])
    methods = {(r["dataset"], r["method"]) for r in results}
    assert methods == {(d, m) for d, ms in speed.PLAN.items() for m in ms}
    for r in results:
        assert len(r["epoch_times"]) == 2 and r["epoch_seconds"] > 0 and r["peak_rss_mb"] > 0
    loaders = {(r["dataset"], r["method"]): r.get("loader") for r in results}
    assert loaders[("counts", "mixvi")] == "device"  # small data: the in-memory path is the default
    assert loaders[("counts", "mixvi_anndata_loader")] == "anndata"
    fmnist = next(r for r in results if r["dataset"] == "fashion_mnist" and r["method"] == "mixvi")
    assert fmnist["latent_seconds_batch_1024"] > 0 and fmnist["latent_seconds_batch_128"] > 0
    table = (tmp_path / "speed_smoke.md").read_text()
    assert "| counts (500×50) | scvi |" in table
    assert "| fashion_mnist (500×784) | scvi |" in table
    assert "| × Lightning |" in table and "| fashion_mnist (500×784) | lightning |" in table


def test_the_manual_lightning_floor_trains_the_module(tmp_path):
    import torch
    from scvi import REGISTRY_KEYS

    from mixvi.module import VAEModule

    speed = _load("speed")
    torch.manual_seed(0)
    x = torch.rand(300, 20)
    module = VAEModule(20, likelihood="bernoulli", n_hidden=8, n_latent=2)
    before = [p.detach().clone() for p in module.parameters()]
    timer = speed.EpochTimer()
    extra = {REGISTRY_KEYS.BATCH_KEY: torch.zeros(300, 1, dtype=torch.long)}
    speed.lightning_floor(module, x, extra, 2, torch.device("cpu"), timer.callback, manual=True)
    assert len(timer.times) == 2
    # the optimiser stepped: every parameter moved (manual optimisation has no automatic step)
    assert all(
        not torch.equal(a, b.detach()) for a, b in zip(before, module.parameters(), strict=True)
    )
    row = speed.main(
        [
            "--smoke",
            "--accelerator",
            "cpu",
            "--datasets",
            "fashion_mnist",
            "--methods",
            "lightning_manual",
            "--out",
            str(tmp_path),
        ]
    )
    assert [r["method"] for r in row] == ["lightning_manual"] and row[0]["epoch_seconds"] > 0


def test_pretraining_benchmark_smoke_in_two_halves(tmp_path):
    pretraining = _load("pretraining")
    # the GPU half: pretrain and write the latents, no clustering
    assert (
        pretraining.main(
            ["--smoke", "--latents-only", "--accelerator", "cpu", "--out", str(tmp_path)]
        )
        == []
    )
    saved = np.load(tmp_path / "latents_seed0.npz")
    assert sorted(saved.files) == ["e1", "e2"]
    assert saved["e2"].shape == (500, 10) and saved["e2"].dtype == np.float16
    assert not np.allclose(saved["e1"], saved["e2"])  # the second epoch trained
    # the CPU half: cluster those latents
    results = pretraining.main(["--smoke", "--from-latents", str(tmp_path), "--out", str(tmp_path)])
    assert [(r["seed"], r["epochs"]) for r in results] == [(0, 1), (0, 2)]
    for r in results:
        assert 0.1 < r["acc"] <= 1 and 0 <= r["nmi"] <= 1 and np.isfinite(r["gmm_log_likelihood"])
    assert "| mean of 1 | 2 |" in (tmp_path / "pretraining_smoke.md").read_text()


def test_speed_benchmark_reports_the_median_of_interleaved_runs():
    speed = _load("speed")
    runs = [{"epoch_seconds": t, "run": i} for i, t in enumerate([3.0, 1.0, 2.0, 9.0])]
    chosen = speed.median_run(runs)
    assert chosen["run"] == 2 and chosen["epoch_seconds"] == 2.0  # lower median of four
    assert chosen["run_epoch_seconds"] == [3.0, 1.0, 2.0, 9.0]
    assert speed.median_run(runs[:3])["epoch_seconds"] == 2.0


def test_a_paired_run_times_bare_steps_before_each_block_of_steps(tmp_path):
    speed = _load("speed")
    argv = ["--smoke", "--paired", "--accelerator", "cpu", "--datasets", "fashion_mnist"]
    bare, mixvi = speed.main([*argv, "--methods", "bare", "mixvi", "--out", str(tmp_path)])
    assert "paired_ratio" not in bare  # the reference itself
    # 4 steps per smoke epoch, blocks of 2: one whole block per epoch (the last one is left)
    blocks = mixvi["paired_blocks"]
    assert [epoch for epoch, _, _ in blocks] == [0, 1]
    assert all(
        0 < seconds < mixvi["epoch_times"][epoch] and bare_seconds > 0
        for epoch, seconds, bare_seconds in blocks
    )
    # the warm-up epoch's block is left out, as from s/epoch
    assert mixvi["paired_ratios"] == [blocks[1][1] / blocks[1][2]]
    assert mixvi["paired_ratio"] == mixvi["paired_ratios"][0] and mixvi["n_paired_blocks"] == 1
    table = (tmp_path / "speed_smoke.md").read_text()
    assert (
        "× bare, paired (quartiles) |" in table and "- paired: in every method's process" in table
    )
    ratio = f"{mixvi['paired_ratio']:.2f}"
    assert f"| {ratio} ({ratio}–{ratio}) |" in table


def test_the_bare_steps_of_a_paired_run_are_not_counted_in_the_epoch():
    import time

    import torch
    from scvi import REGISTRY_KEYS

    from mixvi.module import VAEModule

    speed = _load("speed")
    slept = []

    def bare_steps(n):  # a stand-in reference that takes far longer than the real steps
        time.sleep(1.0)
        slept.append(n)
        return 1.0

    timer = speed.EpochTimer(bare_steps, steps=2)
    x = torch.rand(600, 20)  # 5 steps of 128 per epoch: blocks start at steps 0, 2 and 4
    module = VAEModule(20, likelihood="bernoulli", n_hidden=8, n_latent=2)
    extra = {REGISTRY_KEYS.BATCH_KEY: torch.zeros(600, 1, dtype=torch.long)}
    speed.lightning_floor(module, x, extra, 2, torch.device("cpu"), timer.callback, manual=True)
    assert slept == [2] * 6
    assert [(epoch, bare) for epoch, _, bare in timer.pairs] == [
        (0, 1.0),
        (0, 1.0),
        (1, 1.0),
        (1, 1.0),
    ]
    # each epoch ran three 1 s bare blocks: counted, an epoch would take over 3 s; the real
    # steps of this tiny network take well under 1 s even on a busy machine
    assert len(timer.times) == 2 and all(t < 1.0 for t in timer.times), timer.times


def test_paired_ratios_pool_over_the_runs():
    speed = _load("speed")
    runs = [
        {"epoch_seconds": 2.0, "paired_ratios": [1.0, 1.4]},
        {"epoch_seconds": 1.0, "paired_ratios": [1.1]},
        {"epoch_seconds": 3.0, "paired_ratios": [1.2, 1.3]},
    ]
    chosen = speed.median_run(runs)
    assert chosen["epoch_seconds"] == 2.0  # the run shown is still the median run
    assert chosen["paired_ratio"] == 1.2 and chosen["n_paired_blocks"] == 5
    assert chosen["paired_quartiles"] == pytest.approx([1.05, 1.35])
    assert "paired_ratio" not in speed.median_run([{"epoch_seconds": 1.0}])


def test_scale_benchmark_smoke(tmp_path):
    scale = _load("scale")
    results = scale.main(["--smoke", "--out", str(tmp_path), "--workdir", str(tmp_path)])
    assert [(r["n_obs"], r["mode"], r["loader"]) for r in results] == [
        (300, "in-memory", "device"),
        (300, "backed", "anndata"),
    ]
    for r in results:
        assert r["finite_loss"] and r["epoch_seconds"] > 0 and r["peak_rss_mb"] > 0
        assert r["steps_trained"] == r["steps_per_epoch"] == 3 and not r["epoch_extrapolated"]
    assert not list(tmp_path.rglob("*.h5ad")), "the synthetic files are removed afterwards"
    table = (tmp_path / "scale_smoke.md").read_text()
    assert "| backed | anndata |" in table and "% non-zero" in table


def test_scale_counts_are_sparse_counts(tmp_path):
    import anndata as ad

    scale = _load("scale")
    written = scale.write_counts(120, 30, tmp_path / "x.h5ad")
    adata = ad.read_h5ad(tmp_path / "x.h5ad")
    x = adata.X.toarray()
    assert adata.shape == (120, 30) and written["nnz"] == adata.X.nnz
    assert np.array_equal(x, np.round(x)) and x.min() >= 0 and 0 < written["nnz"] < x.size


def test_a_spawned_measurement_does_not_inherit_the_parents_peak_memory():
    speed = _load("speed")
    ballast = np.ones(600 * 2**20 // 8)  # 600 MiB, touched
    parent = speed.peak_rss_mb()
    child = speed.run_isolated(speed.peak_rss_mb)
    assert parent > 600 and child < parent - 400, (parent, child)
    del ballast


def test_conditional_benchmark_smoke(tmp_path):
    conditional = _load("conditional")
    summary = conditional.main(["--smoke", "--seeds", "0", "--out", str(tmp_path)])
    assert set(summary) == set(conditional.METHODS)
    for scores in summary.values():
        assert scores["n_seeds"] == 1
        assert -1 <= scores["type_ari"][0] <= 1 and 0 <= scores["condition_nmi"][0] <= 1
        assert 0 <= scores["type_asw"][0] <= 1 and 0 <= scores["condition_asw"][0] <= 1
    table = (tmp_path / "conditional_smoke.md").read_text()
    assert "| gmvae |" in table and "| scvi_leiden |" in table and "simulate_counts" in table
    assert "| harmony_leiden |" in table  # harmonypy comes with the test extra
    # the table names the integration scorer that ran: scib-metrics with the bench extra
    scorer = conditional.integration_scorer()
    assert f"integration scores of each embedding: {scorer}" in table
    if scorer.startswith("scib"):
        assert "condition ilisi" in table and "graph connectivity" in table
        assert "scib total" in table
        for scores in summary.values():
            bio = np.mean([scores[k][0] for k in conditional.BIO])
            batch = np.mean([scores[k][0] for k in conditional.BATCH])
            assert scores["scib_total"][0] == pytest.approx(0.6 * bio + 0.4 * batch)
    # its results go into the quality table as that table's conditional dataset
    quality = _load("quality")
    merged = quality.main(
        ["--merge", str(tmp_path / "conditional_smoke.json"), "--out", str(tmp_path), "--name", "q"]
    )
    assert set(merged) == {"conditional"} and set(merged["conditional"]) == set(summary)
    for method, scores in summary.items():
        assert list(merged["conditional"][method]["ari"]) == scores["type_ari"]
        assert list(merged["conditional"][method]["condition_nmi"]) == scores["condition_nmi"]
    assert "| conditional | gmvae |" in (tmp_path / "q.md").read_text()


def test_conditional_runs_of_other_seeds_merge_into_one_table(tmp_path):
    conditional = _load("conditional")
    methods = ["pca_leiden", "cvae_kmeans"]
    common = ["--smoke", "--methods", *methods, "--out", str(tmp_path)]
    conditional.main([*common, "--seeds", "0", "--name", "a"])
    conditional.main([*common, "--seeds", "1", "--name", "b"])
    a, b = str(tmp_path / "a_smoke.json"), str(tmp_path / "b_smoke.json")
    assert "partial" not in (tmp_path / "a_smoke.md").read_text()
    merged = conditional.main(["--merge", a, b, "--out", str(tmp_path), "--name", "ab"])
    assert set(merged) == set(methods) and all(s["n_seeds"] == 2 for s in merged.values())
    runs = [json.loads(Path(p).read_text()) for p in (a, b)]
    pca = [
        run["per_seed"][seed]["pca_leiden"]["type_ari"]
        for run, seed in zip(runs, "01", strict=True)
    ]
    assert merged["pca_leiden"]["type_ari"][0] == pytest.approx(np.mean(pca))
    text = (tmp_path / "ab.md").read_text()
    assert (
        "from `a_smoke.json`" in text and "): seed 1" in text and "summed over the 2 runs" in text
    )
    saved = json.loads((tmp_path / "ab.json").read_text())["meta"]
    assert saved["seeds"] == [0, 1] and saved["wall_seconds"] == pytest.approx(
        sum(run["meta"]["wall_seconds"] for run in runs)
    )
    with pytest.raises(ValueError, match="seed 0 (pca_leiden|cvae_kmeans) is in more than one"):
        conditional.main(["--merge", a, a, "--out", str(tmp_path), "--name", "twice"])
    # rows measured on other cells do not go into the same table
    other = runs[1] | {"meta": runs[1]["meta"] | {"data": "kang18: other cells"}}
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="another data"):
        conditional.main(
            ["--merge", a, str(tmp_path / "other.json"), "--out", str(tmp_path), "--name", "x"]
        )
    # a table written while its run goes on says how far the run got
    partial = conditional.markdown(merged, saved | {"seeds": [0], "planned": 5})
    assert "- partial: 1 of 5 seeds done" in partial


@pytest.mark.kang
def test_conditional_benchmark_runs_on_kang(tmp_path):
    conditional = _load("conditional")
    methods = ["gmvae", "harmony_leiden", "pca_leiden"]
    summary = conditional.main(
        ["--smoke", "--data", "kang", "--seeds", "0", "--methods", *methods, "--out", str(tmp_path)]
    )
    assert set(summary) == set(methods)
    table = (tmp_path / "conditional_kang_smoke.md").read_text()
    assert "# Clusters free of the condition (real counts, Kang 2018)" in table
    assert "kang18: 1500 cells × 2000 seurat_v3 genes" in table and "test data" in table


def test_harmony_removes_a_shift_between_conditions():
    """The Harmony baseline mixes two conditions that PCA alone keeps apart."""
    conditional = _load("conditional")
    rng = np.random.default_rng(0)
    types = np.repeat(np.arange(3), 200)
    conditions = np.tile(np.array(["a", "b"]), 300)
    centres = rng.normal(scale=8.0, size=(3, 10))
    pcs = centres[types] + rng.normal(size=(600, 10)) + 4.0 * (conditions == "b")[:, None]
    import pandas as pd

    corrected = conditional.harmony(pcs, pd.DataFrame({"condition": conditions}), seed=0)
    assert corrected.shape == pcs.shape

    def gap(x):  # distance between the conditions' centres within a type, averaged
        return np.mean(
            [
                np.linalg.norm(
                    x[(types == t) & (conditions == "a")].mean(0)
                    - x[(types == t) & (conditions == "b")].mean(0)
                )
                for t in range(3)
            ]
        )

    assert gap(corrected) < 0.3 * gap(pcs), (gap(corrected), gap(pcs))


def test_perturbation_benchmark_smoke(tmp_path):
    perturbation = _load("perturbation")
    summary = perturbation.main(["--smoke", "--seeds", "0", "--out", str(tmp_path)])
    missing = perturbation.scgen_missing()
    assert set(summary) == set(perturbation.METHODS) - ({"scgen"} if missing else set())
    for method, s in summary.items():
        assert len(s["types"]) == 2
        for key in perturbation.SCORES:
            assert 0 <= s["mean"][key][0] <= 1, (method, key)
    table = (tmp_path / "perturbation_smoke.md").read_text()
    assert "| cvae |" in table and "| mean_shift |" in table and "Per held-out type" in table
    assert ("scgen did not run" in table) == bool(missing)
    assert "- cvae r2_top100" in table and "n/a (smoke)" in table
    assert "partial" not in table  # written after each type, complete once the run ended


def _perturbation_run(path, seed: int, scores: dict, commit: str) -> str:
    """A perturbation.py JSON of one seed: ``scores`` maps type -> method -> (r2_all, top100)."""
    per_seed = {
        str(seed): {
            t: {m: {"r2_all": a, "r2_top100": b, "seconds": 1.0} for m, (a, b) in rows.items()}
            for t, rows in scores.items()
        }
    }
    meta = {
        "command": f"python perturbation.py --seeds {seed}",
        "commit": commit,
        "machine": "test",
        "seeds": [seed],
        "smoke": False,
        "wall_seconds": 10.0,
    }
    path.write_text(json.dumps({"meta": meta, "per_seed": per_seed}))
    return str(path)


def test_perturbation_merges_runs_of_other_types_and_refuses_a_run_twice(tmp_path):
    perturbation = _load("perturbation")
    a = _perturbation_run(
        tmp_path / "a.json", 0, {"B": {"cvae": (0.9, 0.8), "no_change": (0.5, 0.1)}}, "aaa"
    )
    b = _perturbation_run(
        tmp_path / "b.json", 0, {"T": {"cvae": (0.7, 0.6), "no_change": (0.3, 0.3)}}, "bbb"
    )
    summary = perturbation.merge([a, b], tmp_path, "merged", "merge")
    # seed 0 now ran both types: the mean over types is each score's average
    assert summary["cvae"]["mean"]["r2_all"][0] == pytest.approx(0.8)
    assert summary["no_change"]["mean"]["r2_top100"][0] == pytest.approx(0.2)
    table = (tmp_path / "merged.md").read_text()
    assert "aaa, bbb" in table and "seed 0 T" in table and "wall time 20 s" in table
    assert "partial" not in table and "- cvae r2_top100 0.700 vs no_change 0.200: met" in table
    # a second seed that ran one type: per-type rows for it, the mean from complete seeds only
    c = _perturbation_run(tmp_path / "c.json", 1, {"B": {"cvae": (0.5, 0.4)}}, "ccc")
    summary = perturbation.merge([a, b, c], tmp_path, "merged", "merge")
    assert summary["cvae"]["types"]["B"]["n_seeds"] == 2
    assert summary["cvae"]["mean"]["n_seeds"] == 1
    assert "- partial: 3 of 4 (seed, type) runs done" in (tmp_path / "merged.md").read_text()
    with pytest.raises(ValueError, match="seed 0 B cvae is in more than one"):
        perturbation.merge([a, b, a], tmp_path, "again", "merge")


def test_perturbation_scores_a_perfect_prediction_above_a_wrong_one():
    perturbation = _load("perturbation")
    rng = np.random.default_rng(0)
    real = rng.gamma(2.0, size=200)
    assert perturbation.r2(real, real) == pytest.approx(1.0)
    assert perturbation.r2(real + rng.normal(scale=0.1, size=200), real) > 0.9
    assert perturbation.r2(rng.permutation(real), real) < 0.2
    counts = rng.poisson(3.0, size=(5, 40)).astype(float)
    log = perturbation.lognormalise(counts)
    np.testing.assert_allclose(np.expm1(log).sum(1), perturbation.TARGET_SUM)


def test_integration_scores_tell_a_mixed_condition_from_a_separated_one():
    """The embedding scores, scib-metrics' or the silhouettes, rank the two cases the right way."""
    conditional = _load("conditional")
    rng = np.random.default_rng(0)
    types = np.repeat(np.arange(3), 200)
    conditions = np.tile(np.arange(2), 300)
    centres = rng.normal(scale=6.0, size=(3, 5))
    mixed = centres[types] + rng.normal(size=(600, 5))
    split = mixed + 6.0 * conditions[:, None] * np.eye(5)[0]
    good = conditional.embedding_scores(mixed, types.astype(str), conditions.astype(str))
    bad = conditional.embedding_scores(split, types.astype(str), conditions.astype(str))
    assert good["condition_asw"] > 0.9 > bad["condition_asw"] + 0.2, (good, bad)
    assert good["type_asw"] > 0.7
    if conditional.integration_scorer().startswith("scib"):
        assert good["condition_ilisi"] > 0.8 > bad["condition_ilisi"] + 0.3, (good, bad)
        assert good["type_clisi"] > 0.9 and good["graph_connectivity"] > 0.9


def test_quality_merge_takes_an_older_conditional_run_without_acc(tmp_path):
    quality = _load("quality")
    row = {"type_ari": 0.9, "type_nmi": 0.8, "condition_ari": 0.0, "condition_nmi": 0.01}
    run = {
        "meta": {"command": "c", "commit": "x", "machine": "m", "smoke": False, "wall_seconds": 1},
        "per_seed": {"0": {"gmvae": {**row, "seconds": 1.0}}},
    }
    (tmp_path / "old.json").write_text(json.dumps(run))
    merged = quality.main(["--merge", str(tmp_path / "old.json"), "--out", str(tmp_path)])
    assert "acc" not in merged["conditional"]["gmvae"]
    assert merged["conditional"]["gmvae"]["ari"][0] == 0.9
    assert (
        "| conditional | gmvae | n/a | 0.800 ± 0.000 | 0.900 ± 0.000 |"
        in (tmp_path / "quality.md").read_text()
    )


def test_levers_benchmark_smoke(tmp_path):
    levers = _load("levers")
    summary = levers.main(["--smoke", "--datasets", "sim", "--seeds", "0", "--out", str(tmp_path)])
    assert set(summary["sim"]) == set(levers.VARIANTS)
    fitted = {"umap", "kmeans_start", "self_training", "merge_2k"}
    for variant, scores in summary["sim"].items():
        assert -1 <= scores["ari"][0] <= 1
        # the ELBO is the label-free view of a fit; kmeans_latent and the baseline have none
        assert ("elbo" in scores) == (variant in fitted)
    saved = json.loads((tmp_path / "levers_smoke.json").read_text())
    assert saved["meta"]["smoke"] is True and set(saved["per_seed"]["sim"]) == {"0"}
    assert "| sim | merge_2k |" in (tmp_path / "levers_smoke.md").read_text()


def test_entropy_merge_joins_the_components_that_share_cells():
    """Components 0 and 1 split the same cells between them; 2 and 3 are apart: 0 joins 1."""
    levers = _load("levers")
    rng = np.random.default_rng(0)
    share = rng.uniform(0.3, 0.7, 300)
    gamma = np.zeros((600, 4))
    gamma[:300, 0], gamma[:300, 1] = share, 1 - share
    gamma[300:450, 2] = gamma[450:, 3] = 0.98
    gamma[300:450, 3] = gamma[450:, 2] = 0.02
    merged = levers.entropy_merge(gamma, 3)
    assert len(np.unique(merged[:300])) == 1
    assert len(set(merged[:300]) | set(merged[300:450]) | set(merged[450:])) == 3
    assert len(np.unique(levers.entropy_merge(gamma, 2))) == 2


def test_dec_target_sharpens_the_responsibilities():
    levers = _load("levers")
    gamma = np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    target = levers.dec_target(gamma)
    np.testing.assert_allclose(target.sum(1), 1)
    assert target[0, 0] > gamma[0, 0] and target[1, 1] > gamma[1, 1]


def test_pretraining_benchmark_takes_a_subset_of_images():
    pretraining = _load("pretraining")
    adata, labels = pretraining.load(False, 300)
    assert adata.n_obs == len(labels) == 300 and len(set(labels)) == 10


def test_mean_sd_is_the_sample_standard_deviation_over_seeds():
    common = _load("common")
    rows = [{"ari": 0.5}, {"ari": 0.7}, {"ari": 0.9}]
    summary = common.mean_sd(rows, ["ari"])
    assert summary["n_seeds"] == 3
    assert summary["ari"][0] == pytest.approx(0.7)
    assert summary["ari"][1] == pytest.approx(0.2)  # ddof=1; np.std's default gives 0.163
    assert common.mean_sd(rows[:1], ["ari"])["ari"] == [0.5, 0.0]


def test_count_settings_benchmark_smoke(tmp_path):
    count_settings = _load("count_settings")
    summary = count_settings.main(["--smoke", "--seeds", "0", "--out", str(tmp_path)])
    assert set(summary) == set(count_settings.METHODS)
    assert all(np.isfinite(summary[net]["elbo"][0]) for net in count_settings.NETWORKS)
    table = (tmp_path / "count_settings_smoke.md").read_text()
    # development data whose labels chose the default: the table must say so
    assert "sim_counts: labels guided a setting" in table and "| linear_leiden |" in table


def test_count_settings_scores_an_unregistered_condition(tmp_path):
    count_settings = _load("count_settings")
    argv = ["--smoke", "--seeds", "0", "--out", str(tmp_path), "--name", "cond"]
    summary = count_settings.main([*argv, "--data", "sim_condition", "--networks", "vae_gmm"])
    assert set(summary) == {*count_settings.BASELINES, "vae_gmm", "vae_gmm_leiden"}
    assert all(0 <= s["condition_ari"][0] <= 1 for s in summary.values())
    table = (tmp_path / "cond_smoke.md").read_text()
    assert "| ARI to condition |" in table and "sim_condition: development data" in table
    # two conditions in the simulation (left unregistered by run_seed), one in sim_counts
    adata = count_settings.simulate(0, True, "sim_condition")
    assert adata.obs["condition"].nunique() == 2
    assert count_settings.simulate(0, True).obs["condition"].nunique() == 1


def test_the_count_default_is_the_network_count_settings_chose():
    count_settings = _load("count_settings")
    from mixvi.model._defaults import COUNT_LATENT, COUNT_LAYERS

    size = f"linear_{COUNT_LATENT}"
    default = f"{size}_norm"
    assert count_settings.NETWORKS[default] == {
        "n_layers": COUNT_LAYERS,
        "n_latent": COUNT_LATENT,
        "normalize_input": True,  # what GMVAE(normalize_input=None) resolves to on counts
    }
    # the committed tables: linear beat the deeper networks, among the linear maps the
    # default's latent size has the best mean ARI, and the encoder input scaled to the
    # median library beat log1p of the raw counts (development data; the tables say so)
    networks = json.loads((RESULTS / "count_settings.json").read_text())["summary"]
    assert max(("deep", "one_layer", "linear"), key=lambda n: networks[n]["ari"][0]) == "linear"
    sizes = json.loads((RESULTS / "count_latent.json").read_text())["summary"]
    linear = [n for n in sizes if n.startswith("linear") and not n.endswith("_leiden")]
    assert len(linear) == 4 and max(linear, key=lambda n: sizes[n]["ari"][0]) == size
    inputs = json.loads((RESULTS / "count_input.json").read_text())["summary"]
    assert inputs[default]["ari"][0] > inputs[size]["ari"][0]


def test_the_recorded_commit_marks_changed_source_from_any_directory(tmp_path, monkeypatch):
    import shutil
    import subprocess

    # a repository of its own: src/ and benchmarks/common.py, committed, then src changed
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "benchmarks").mkdir()
    shutil.copy(BENCHMARKS / "common.py", repo / "benchmarks" / "common.py")
    (repo / "src" / "code.py").write_text("x = 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    spec = importlib.util.spec_from_file_location(
        "copied_common", repo / "benchmarks" / "common.py"
    )
    copied = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copied)
    monkeypatch.chdir(repo / "benchmarks")  # where the scripts are run from
    clean = copied.commit()
    assert len(clean) == 40 and "uncommitted" not in clean
    (repo / "src" / "code.py").write_text("x = 2\n")
    assert copied.commit() == clean + " (uncommitted changes)"


def test_start_stability_smoke_and_agreement(tmp_path):
    start_stability = _load("start_stability")
    summary = start_stability.main(["--smoke", "--seeds", "0", "1", "--out", str(tmp_path)])
    assert set(summary) == {"umap", "leiden", "pca"}
    assert all(summary[s]["seed_agreement"][2] == 1 for s in summary)  # one pair of seeds
    table = (tmp_path / "start_stability_smoke.md").read_text()
    assert "labels chose nothing" in table and "| leiden |" in table
    # agreement is the mean ARI over pairs: identical clusterings agree fully, whatever
    # their names, and a third that differs pulls the mean down
    same = start_stability.agreement([[0, 0, 1, 1], [1, 1, 0, 0]])
    assert same == (1.0, 0.0, 1)
    mixed = start_stability.agreement([[0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 0, 1]])
    assert mixed[2] == 3 and mixed[0] < 0.5


def test_the_count_start_default_is_the_start_whose_clusters_agree_most_across_seeds():
    # the committed comparisons on real counts chose the default by agreement, not labels:
    # each later run pits the earlier winner against a new start
    import anndata as ad

    import mixvi
    from mixvi.model._defaults import default_start

    winner = None
    for name in ("start_stability", "start_stability_pca"):
        saved = json.loads((RESULTS / f"{name}.json").read_text())
        assert saved["meta"]["smoke"] is False and len(saved["meta"]["seeds"]) == 5
        assert "uncommitted" not in saved["meta"]["commit"]
        summary = saved["summary"]
        assert winner is None or winner in summary  # the earlier winner ran again
        winner = max(summary, key=lambda start: summary[start]["seed_agreement"][0])
    # and on the development simulation, no other start clustered better on average
    dev = json.loads((RESULTS / "count_start.json").read_text())["summary"]
    starts = {
        name.removeprefix("start_"): row
        for name, row in dev.items()
        if name.startswith("start_") and name.count("_") == 1  # not the "_leiden" rows
    }
    assert winner in starts and len(starts) == 3
    for score in ("ari", "nmi"):
        assert starts[winner][score][0] >= max(row[score][0] for row in starts.values())
    counts = ad.AnnData(np.random.default_rng(0).poisson(3.0, (40, 8)).astype(np.float32))
    mixvi.model.GMVAE.setup_anndata(counts)
    model = mixvi.model.GMVAE(counts, n_components=2, likelihood="nb")
    assert default_start(model.adata_manager, "nb", "ae") == winner


def test_k_criteria_benchmark_smoke(tmp_path):
    k_criteria = _load("k_criteria")
    argv = ["--smoke", "--datasets", "pbmc", "sim_counts", "--seeds", "0", "--out", str(tmp_path)]
    summary = k_criteria.main(argv)
    for name, true_k in (("pbmc", 10), ("sim_counts", 8)):
        assert summary[name]["true_k"] == true_k and summary[name]["role"] == "development"
        for criterion in k_criteria.CRITERIA:
            (k,) = summary[name][criterion]["chosen_k_per_seed"]
            assert 2 <= k <= 20
            assert summary[name][criterion]["mean_abs_error"] == abs(k - true_k)
    table = (tmp_path / "k_criteria_smoke.md").read_text()
    assert "| sim_counts | development | 8 |" in table and "every development dataset" in table


def test_eigengap_finds_the_number_of_disconnected_groups():
    from scipy.sparse import block_diag, csr_matrix

    k_criteria = _load("k_criteria")
    rng = np.random.default_rng(0)
    groups = []
    for size in (30, 40, 50, 60):  # four dense groups with no edge between them
        w = rng.random((size, size))
        groups.append(csr_matrix((w + w.T) / 2))
    graph = block_diag(groups, format="csr")
    assert k_criteria.eigengap_k(graph, list(range(2, 10)), seed=0) == 4


def test_k_criteria_rule_needs_every_development_seed_within_two():
    k_criteria = _load("k_criteria")
    rows = {"true_k": 10, "separation": 9, "eigengap": 13, "leiden": 10, "bic": 12}
    per_seed = {
        "mnist5k": {0: rows, 1: {**rows, "leiden": 7}},
        "pbmc3k": {0: {**rows, "separation": 2}},  # test data: never decides
    }
    summary = k_criteria.summarise(per_seed)
    assert summary["passes_rule"] == ["separation", "bic"]
    assert summary["mnist5k"]["leiden"]["chosen_k_per_seed"] == [10, 7]
    assert summary["mnist5k"]["leiden"]["mean_abs_error"] == 1.5
    assert summary["pbmc3k"]["role"] == "test"
    assert not summary["pbmc3k"]["separation"]["within_tolerance"]
