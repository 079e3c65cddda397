import numpy as np
import torch

import mixvi


def test_data_dir_follows_setting_then_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(mixvi.settings, "_data_dir", None)
    monkeypatch.setenv("MIXVI_DATA_DIR", str(tmp_path / "env"))
    assert mixvi.settings.data_dir == tmp_path / "env"
    mixvi.settings.data_dir = tmp_path / "explicit"
    assert mixvi.settings.data_dir == tmp_path / "explicit"
    mixvi.settings.data_dir = None
    assert mixvi.settings.data_dir == tmp_path / "env"


def test_seed_makes_draws_repeatable():
    mixvi.settings.seed = 7
    a = torch.rand(3), np.random.rand(3)  # noqa: NPY002  (the global state is what is seeded)
    mixvi.settings.seed = 7
    b = torch.rand(3), np.random.rand(3)  # noqa: NPY002
    torch.testing.assert_close(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert mixvi.settings.seed == 7


def test_version_and_verbosity():
    assert mixvi.__version__
    mixvi.settings.verbosity = "WARNING"
    assert mixvi.settings.verbosity == 30
    mixvi.settings.verbosity = "INFO"
