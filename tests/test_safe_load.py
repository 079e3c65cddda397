"""Loading a model never runs code from the file; broken model directories give clear errors."""

import os

import numpy as np
import pytest
import torch
from conftest import QUIET

import mixvi
from mixvi.model import CorruptModelFileError, UnsafeModelFileError


class _RunsCode:
    """Pickles as a call to os.system, the classic malicious-pickle payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, request):
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    mixvi.settings.seed = 0
    mixvi.model.CVAE.setup_anndata(adata, condition_key="phase")
    model = mixvi.model.CVAE(adata, n_hidden=16)
    model.train(max_epochs=1, **QUIET)
    path = tmp_path_factory.mktemp("model") / "cvae"
    model.save(path, save_anndata=False)
    return model, adata, path


def _poisoned_copy(saved_path, tmp_path):
    content = torch.load(saved_path / "model.pt", weights_only=False)  # our own file: trusted
    marker = tmp_path / "code_ran"
    content["attr_dict"]["payload"] = _RunsCode(marker)
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save(content, bad / "model.pt")
    return bad, marker


def test_a_saved_model_loads_and_matches(saved):
    model, adata, path = saved
    loaded = mixvi.model.CVAE.load(path, adata=adata)
    np.testing.assert_allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-6
    )


def test_a_crafted_model_file_is_refused_and_its_code_never_runs(saved, tmp_path):
    _, adata, path = saved
    bad, marker = _poisoned_copy(path, tmp_path)
    with pytest.raises(UnsafeModelFileError, match="could run code"):
        mixvi.model.CVAE.load(bad, adata=adata)
    with pytest.raises(UnsafeModelFileError):
        mixvi.model.CVAE.load_query_data(adata.copy(), str(bad))
    with pytest.raises(UnsafeModelFileError):
        mixvi.model.CVAE.prepare_query_anndata(adata.copy(), str(bad))
    assert not marker.exists()
    # the same file through plain full unpickling would have run the payload
    torch.load(bad / "model.pt", weights_only=False)
    assert marker.exists()


def test_broken_model_directories_give_clear_errors(saved, tmp_path):
    _, adata, path = saved
    with pytest.raises(CorruptModelFileError, match="No saved model"):
        mixvi.model.CVAE.load(tmp_path / "nowhere", adata=adata)
    raw = (path / "model.pt").read_bytes()
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "model.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptModelFileError, match="not a complete model file"):
        mixvi.model.CVAE.load(truncated, adata=adata)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "model.pt").write_bytes(b"not a model at all")
    with pytest.raises(CorruptModelFileError):
        mixvi.model.CVAE.load(garbage, adata=adata)
    partial = tmp_path / "partial"
    partial.mkdir()
    torch.save({"model_state_dict": {}}, partial / "model.pt")
    with pytest.raises(CorruptModelFileError, match="lacks"):
        mixvi.model.CVAE.load(partial, adata=adata)


def test_var_names_that_do_not_match_are_refused_at_load(saved):
    _, adata, path = saved
    other = adata.copy()
    other.var_names = [f"gene_{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="do not match the model's features: 765 missing"):
        mixvi.model.CVAE.load(path, adata=other)
    shuffled = adata[:, adata.var_names[::-1]].copy()
    with pytest.raises(ValueError, match="another order"):
        mixvi.model.CVAE.load(path, adata=shuffled)


def test_a_saved_model_file_names_no_pandas_objects_and_its_history_comes_back(saved):
    # what a file holds must not hang on pandas' pickling internals (they moved in pandas 3)
    import pandas as pd

    from mixvi.model import _safe_load

    model, adata, path = saved
    named = set()

    class Recording(_safe_load._RestrictedUnpickler):
        def find_class(self, module, name):
            named.add(f"{module}.{name}")
            return super().find_class(module, name)

    class RecordingPickle(_safe_load._RestrictedPickle):
        Unpickler = Recording

        @staticmethod
        def load(file, **kwargs):
            return Recording(file, **kwargs).load()

    torch.load(
        path / "model.pt", map_location="cpu", weights_only=False, pickle_module=RecordingPickle
    )
    assert named and not [n for n in named if n.startswith("pandas")], sorted(named)
    loaded = mixvi.model.CVAE.load(path, adata=adata)
    assert set(loaded.history) == set(model.history)
    for key, table in model.history.items():
        assert isinstance(loaded.history[key], pd.DataFrame)
        pd.testing.assert_frame_equal(loaded.history[key], table, check_index_type=False)
    # the model in memory keeps its tables: only the file holds arrays
    assert all(isinstance(t, pd.DataFrame) for t in model.history.values())


def test_plain_tables_round_trip_keeps_columns_index_and_values():
    import pandas as pd

    from mixvi.model._safe_load import plain_tables, restore_tables

    frame = pd.DataFrame({"elbo_train": [3.0, 2.5]}, index=pd.Index([0, 1], name="epoch"))
    history = {"elbo_train": frame, "note": "kept"}
    plain = plain_tables(history)
    assert not any(isinstance(v, pd.DataFrame) for v in plain.values()) and plain["note"] == "kept"
    back = restore_tables(plain)
    pd.testing.assert_frame_equal(back["elbo_train"], frame)
    assert plain_tables([1, 2]) == [1, 2] and restore_tables({"a": 1}) == {"a": 1}
