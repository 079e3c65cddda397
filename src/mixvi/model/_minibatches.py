"""How minibatches reach the module.

Two paths: the in-memory one puts the registered data on the training device once and cuts
each minibatch there (:class:`InMemoryDataSplitter` with :class:`DeviceBatches`); the
streaming one is scvi-tools' AnnData loader, which reads each minibatch from the AnnData
(backed files, data larger than memory, several processes). :func:`choose_loader` picks one.
:class:`RowIndexField` gives every minibatch its rows' indices, for per-cell state.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data.fields import NumericalObsField
from scvi.dataloaders import DeviceBackedDataSplitter
from torch.utils.data import DataLoader

logger = logging.getLogger("mixvi")

LOADERS = ("auto", "device", "anndata")
INFERENCE_BATCH_SIZE = 1024


def free_memory(device: torch.device) -> int:
    """Free bytes on ``device``: GPU memory for CUDA, available RAM otherwise."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0  # unknown: stay with the streaming loader


class DeviceBatches:
    """Minibatches of on-device tensors, each cut by one index tensor on the same device.

    scvi-tools' device-backed loader indexes its tensors with a Python list per minibatch;
    on a GPU that list is copied to the device at every step, and the copy waits for the
    GPU to finish its queue. Here the epoch's order is drawn once per epoch, copied to the
    device once, and sliced there.
    """

    def __init__(
        self, tensors: dict[str, torch.Tensor], batch_size: int | None, shuffle: bool
    ) -> None:
        self.tensors = tensors
        self.n_obs = len(next(iter(tensors.values())))
        self.batch_size = batch_size or self.n_obs  # None: the whole set in one batch
        self.shuffle = shuffle

    def __len__(self) -> int:
        return -(-self.n_obs // self.batch_size)

    def __iter__(self):
        device = next(iter(self.tensors.values())).device
        # A one-batch DataLoader draws the order: it takes the same random numbers from the
        # global generator as scvi-tools' loaders do per epoch, so a seed gives the same
        # minibatches on both paths.
        rows = DataLoader(range(self.n_obs), batch_size=self.n_obs, shuffle=self.shuffle)
        order = next(iter(rows)).to(device)
        for batch in order.split(self.batch_size):
            yield {key: value.index_select(0, batch) for key, value in self.tensors.items()}


class InMemoryDataSplitter(DeviceBackedDataSplitter):
    """scvi-tools' device-backed splitter, with :class:`DeviceBatches` as its loaders.

    Building the on-device tensors iterates a DataLoader, which draws from the global torch
    generator; undoing that draw makes a seeded run see the same minibatches, dropout masks
    and z draws as with the streaming loader, so both paths give the same model.
    """

    def _get_tensor_dict(self, indices, device):
        with torch.random.fork_rng(devices=[]):
            return super()._get_tensor_dict(indices, device)

    def _make_dataloader(self, tensor_dict: dict[str, torch.Tensor] | None, shuffle: bool):
        return None if tensor_dict is None else DeviceBatches(tensor_dict, self.batch_size, shuffle)


class RowIndexField(NumericalObsField):
    """Each observation's row number, written into ``adata.obs`` on registration and transfer.

    It lets a module look up per-cell state (e.g. an initial clustering) in a minibatch;
    filling it on transfer means any new AnnData works without the user adding a column.
    """

    def __init__(self) -> None:
        super().__init__(REGISTRY_KEYS.INDICES_KEY, "_mixvi_row")

    def register_field(self, adata: AnnData) -> dict:
        adata.obs[self.attr_key] = np.arange(adata.n_obs, dtype=np.int64)
        return super().register_field(adata)

    def transfer_field(self, state_registry: dict, adata_target: AnnData, **kwargs) -> dict:
        adata_target.obs[self.attr_key] = np.arange(adata_target.n_obs, dtype=np.int64)
        return super().transfer_field(state_registry, adata_target, **kwargs)


def choose_loader(
    loader: str, adata: AnnData, n_vars: int, accelerator: str, devices, trainer_kwargs: dict
) -> str:
    """``"device"`` or ``"anndata"``: how :meth:`MixviModel.train`'s minibatches will be made.

    ``"auto"`` picks the in-memory device path when training is single-process, the AnnData
    is in memory and its dense data take at most a quarter of the device's free memory, and
    says why when it streams from the AnnData instead.
    """
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}.")
    if "datamodule" in trainer_kwargs:
        return "anndata"  # the caller brought their own data module
    if loader != "auto":
        return loader
    strategy = str(trainer_kwargs.get("strategy", ""))
    if (
        "ddp" in strategy
        or (isinstance(devices, int) and devices > 1)
        or isinstance(devices, list | tuple)
    ):
        reason = "training runs in several processes"
    elif adata.isbacked:
        reason = "the AnnData is backed (on disk)"
    else:
        from scvi.model._utils import parse_device_args

        _, _, device = parse_device_args(
            accelerator=accelerator, devices=devices, return_device="torch"
        )
        dense_bytes = 4 * adata.n_obs * n_vars
        free = free_memory(device)
        if dense_bytes <= free / 4:
            return "device"
        reason = (
            f"the dense data ({dense_bytes / 2**30:.1f} GiB) would take more than a quarter of the "
            f"{free / 2**30:.1f} GiB free on {device}"
        )
    logger.info(
        "loader='auto': minibatches stream from the AnnData (loader='anndata'), since %s.", reason
    )
    return "anndata"
