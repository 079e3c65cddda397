"""Image plots: right panels, real pixels, clear errors on non-image data."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from conftest import QUIET
from matplotlib.image import imread

import mixvi


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


@pytest.fixture
def digits():
    return mixvi.data.mnist_5k(n_obs=300)


def test_images_grid_and_groups(digits, tmp_path):
    fig = mixvi.pl.images(digits, n=12, ncols=6, return_fig=True)
    assert len(_image_axes(fig)) == 12
    fig = mixvi.pl.images(digits, groupby="label", ncols=5, return_fig=True)
    assert len(_image_axes(fig)) == 50
    assert len(fig.axes) == 50
    path = tmp_path / "grid.png"
    mixvi.pl.images(digits[:16], n=16, ncols=4, save=path)
    png = imread(path)
    assert png.shape[0] > 150 and png.shape[1] > 150
    grey = png[..., :3].mean(-1)
    assert grey.std() > 0.05  # digits drawn, not a blank canvas


def test_images_from_arrays():
    arr = np.random.default_rng(0).random((5, 8, 8))
    assert len(_image_axes(mixvi.pl.images(arr, ncols=3, return_fig=True))) == 5
    with pytest.raises(ValueError, match="image_shape"):
        mixvi.pl.images(arr.reshape(5, 64))


def test_non_image_anndata_is_refused(pbmc):
    with pytest.raises(ValueError, match="holds no images"):
        mixvi.pl.images(pbmc)
    with pytest.raises(ValueError, match="holds no images"):
        mixvi.pl.cluster_examples(pbmc, "bulk_labels")


def test_reconstructions_samples_and_clusters(digits):
    digits.obs["digit"] = digits.obs["label"]
    mixvi.model.CVAE.setup_anndata(digits, condition_key="digit")
    model = mixvi.model.CVAE(digits, likelihood="bernoulli", n_latent=4)
    model.train(max_epochs=2, **QUIET)
    fig = mixvi.pl.reconstructions(model, n=6, return_fig=True)
    assert len(_image_axes(fig)) == 12
    fig = mixvi.pl.samples(model, n=4, return_fig=True)
    assert len(_image_axes(fig)) == 40
    fig = mixvi.pl.samples(model, n=3, groups=["1", "7"], return_fig=True)
    assert len(_image_axes(fig)) == 6
    fig = mixvi.pl.cluster_examples(digits, "label", n_per_cluster=3, return_fig=True)
    assert len(_image_axes(fig)) == 30


def test_samples_of_an_unconditional_vae(digits):
    mixvi.model.VAE.setup_anndata(digits)
    model = mixvi.model.VAE(digits, likelihood="bernoulli", n_latent=2)
    model.train(max_epochs=1, **QUIET)
    fig = mixvi.pl.samples(model, n=5, return_fig=True)
    assert len(_image_axes(fig)) == 5
    with pytest.raises(ValueError, match="no conditions"):
        mixvi.pl.samples(model, groups=["1"])


def test_samples_per_gmvae_component(digits):
    mixvi.model.GMVAE.setup_anndata(digits)
    model = mixvi.model.GMVAE(
        digits, n_components=4, likelihood="bernoulli", n_latent=3, n_hidden=32
    )
    model.train(max_epochs=3, pretrain_epochs=1, **QUIET)
    fig = mixvi.pl.samples(model, n=5, return_fig=True)
    assert len(_image_axes(fig)) == 20
    fig = mixvi.pl.samples(model, n=2, groups=[1, 3], return_fig=True)
    assert len(_image_axes(fig)) == 4


def test_plots_follow_scanpys_ax_show_and_return_fig(digits, monkeypatch):
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(True))
    # by default the figure is shown and nothing is returned, as in scanpy
    assert mixvi.pl.images(digits, n=4, ncols=4) is None
    assert shown == [True]
    fig = mixvi.pl.images(digits, n=4, ncols=4, show=False)
    assert len(_image_axes(fig)) == 4 and shown == [True]
    # into a given axes: one montage image of the grid, with a row label per group
    outer, ax = plt.subplots()
    drawn = mixvi.pl.images(digits, groupby="label", ncols=3, ax=ax, return_fig=True)
    assert drawn is outer and shown == [True]
    assert len(ax.images) == 1
    montage = ax.images[0].get_array()
    assert montage.shape[:2] == (10 * 29, 3 * 29)  # 10 digits x 3 members, 1-pixel gaps
    assert [t.get_text() for t in ax.get_yticklabels()][0].startswith("0 (n=")
    assert np.isfinite(np.asarray(montage, dtype=float)).sum() == 30 * 28 * 28
