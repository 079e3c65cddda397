"""Package-wide settings: random seed, data directory and verbosity."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import scvi

DATA_DIR_ENV = "MIXVI_DATA_DIR"
#: the loggers behind Lightning's banner ("GPU available: ..."), tips and "`Trainer.fit` stopped"
LIGHTNING_LOGGERS = (
    "lightning.pytorch",
    "lightning.fabric",
    "pytorch_lightning",
    "lightning_fabric",
)

logger = logging.getLogger("mixvi")


class MixviSettings:
    """Settings for mixvi, available as :data:`mixvi.settings`.

    Attributes
    ----------
    seed
        Random seed. Setting it seeds Python, NumPy and torch through
        :attr:`scvi.settings.seed`, so that training is reproducible on the CPU.
    data_dir
        Where dataset loaders look for and download files. Defaults to the
        ``MIXVI_DATA_DIR`` environment variable, else ``~/.cache/mixvi``.
    verbosity
        A :mod:`logging` level for mixvi's logger (``logging.INFO`` by default). At
        ``logging.DEBUG`` (or ``"DEBUG"``), training also shows Lightning's own lines
        (accelerator banner, tips, warnings), which mixvi hides otherwise.

    Examples
    --------
    >>> import mixvi
    >>> mixvi.settings.seed = 0
    >>> mixvi.settings.data_dir = "/scratch/data"
    """

    def __init__(self) -> None:
        self._seed: int | None = None
        self._data_dir: Path | None = None
        self.verbosity = logging.INFO

    @property
    def seed(self) -> int | None:
        return self._seed

    @seed.setter
    def seed(self, value: int | None) -> None:
        self._seed = value
        if value is not None:
            with quiet_lightning():  # Lightning logs "Seed set to ..." at every seed
                scvi.settings.seed = value

    @property
    def data_dir(self) -> Path:
        if self._data_dir is not None:
            return self._data_dir
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            return Path(env).expanduser()
        return Path("~/.cache/mixvi").expanduser()

    @data_dir.setter
    def data_dir(self, value: str | os.PathLike | None) -> None:
        self._data_dir = None if value is None else Path(value).expanduser()

    @property
    def verbosity(self) -> int:
        return logger.level

    @verbosity.setter
    def verbosity(self, level: int | str) -> None:
        logger.setLevel(level)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
            logger.addHandler(handler)
            # our own handler prints; don't print a second time through the root logger
            logger.propagate = False

    def __repr__(self) -> str:
        return (
            f"MixviSettings(seed={self.seed!r}, data_dir={str(self.data_dir)!r}, "
            f"verbosity={logging.getLevelName(self.verbosity)!r})"
        )


settings = MixviSettings()


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's informational lines and warnings, unless mixvi's verbosity is DEBUG.

    A scverse user expects a progress bar and the package's own messages from ``train()``;
    Lightning adds an accelerator banner, a tip, deprecation notes and a stop message on
    every run. Its errors still show, and mixvi's own warnings (the NaN guard, an interrupt,
    the loader choice) come through mixvi's logger, which this leaves alone.
    """
    if settings.verbosity <= logging.DEBUG:
        yield
        return
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [log.level for log in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", module=r"(lightning|pytorch_lightning|lightning_fabric)(\.|$)"
        )
        for log in loggers:
            log.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for log, level in zip(loggers, levels, strict=True):
                log.setLevel(level)


@contextmanager
def isolated_seed(seed: int) -> Iterator[None]:
    """Run the block seeded with ``seed``, then put every global random state back.

    Inside the block, scvi-tools' and mixvi's seed settings read ``seed`` too: scvi-tools
    draws the train/validation split from its own setting, not from NumPy's generator, so
    a block run while it was unset would split the cells differently on every call.
    Afterwards Python's, NumPy's and torch's (CPU and CUDA) generators, both seed settings
    and the environment variables that seeding sets are as they were before the block, so
    that a library call that trains a throwaway model (choosing K) leaves the user's random
    stream alone.
    """
    import random

    import numpy as np
    import torch
    from lightning.pytorch import seed_everything

    python_state = random.getstate()
    numpy_state = np.random.get_state()  # noqa: NPY002 (the legacy global state is what we restore)
    environ = {key: os.environ.get(key) for key in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    scvi_seed, mixvi_seed = scvi.settings._seed, settings._seed
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            with quiet_lightning():  # Lightning logs "Seed set to ..." at every seed
                seed_everything(seed)
            # the attributes, not the setters, which would seed everything once more
            scvi.settings._seed, settings._seed = seed, seed
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)  # noqa: NPY002
            for key, value in environ.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            scvi.settings._seed, settings._seed = scvi_seed, mixvi_seed
