"""The GMVAE's training phases: their order, how a call's epochs split among them, timing."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple

import pandas as pd

#: what :attr:`GMVAE.phase_seconds_` times; the UMAP is part of the mixture start
PHASES = ("pretraining", "mixture_start", "umap", "anchored", "free")
#: :attr:`GMVAE.phase_`, in the order the phases run
PROGRESS = ("built", "pretrained", "started", "anchored", "trained")


class EpochPlan(NamedTuple):
    """The epochs one ``train()`` call gives each phase, and whether it starts the mixture."""

    pretraining: int
    starts: bool
    anchored: int
    free: int


def plan_epochs(
    total: int,
    progress: str,
    pretrain_epochs: int | None,
    anchor_epochs: int | None,
    init: str | None,
    start_init: str | None,
) -> EpochPlan:
    """Split ``total`` epochs among the phases a model at ``progress`` has still to run.

    Pretraining (for a model just built) takes a third unless ``pretrain_epochs`` says
    otherwise; the anchored phase (after a start, this call's or an earlier one's, of kind
    ``init`` or ``start_init``) a quarter of the rest, none after a ``"gmm"`` start; the free
    phase what is left. Epochs that do not add up are refused before any training.
    """
    step = PROGRESS.index(progress)
    pre = 0
    if step == 0:
        pre = max(1, total // 3) if pretrain_epochs is None else pretrain_epochs
    starts = step <= 1 and init is not None
    anchored = 0
    if starts or progress == "started":
        kind = init if starts else start_init
        default = 0 if kind == "gmm" else (total - pre) // 4
        anchored = default if anchor_epochs is None else anchor_epochs
    free = total - pre - anchored
    if min(pre, anchored, free) < 0:
        raise ValueError(
            f"max_epochs={total} is less than pretrain_epochs={pre} plus anchor_epochs={anchored}."
        )
    return EpochPlan(pre, starts, anchored, free)


@contextmanager
def timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Add the wall-clock time of the block to ``seconds[phase]``."""
    began = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] += time.perf_counter() - began


def history_lengths(history: Mapping[str, pd.DataFrame] | None) -> dict[str, int]:
    """The number of rows of each history table (to slice a phase out later)."""
    return {key: len(table) for key, table in (history or {}).items()}


def history_since(
    history: Mapping[str, pd.DataFrame] | None, before: Mapping[str, int]
) -> dict[str, pd.DataFrame]:
    """Copies of the rows each history table gained after ``before``: one phase's.

    scvi-tools appends every ``train()`` to the same tables, so a phase's history is a slice
    of them, copied so that later phases leave it alone.
    """
    return {key: table.iloc[before.get(key, 0) :].copy() for key, table in (history or {}).items()}
