"""Reader and writer for the IDX format of MNIST and Fashion-MNIST.

An IDX file is two zero bytes, a dtype code, the number of dimensions, each dimension as
a big-endian uint32, then the values in big-endian order. Files may be gzip-compressed.
Every field is checked, so a truncated or corrupt file raises instead of giving garbage.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """The file is not a valid IDX file."""


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise IDXError(f"{path}: corrupt or truncated gzip stream ({err}).") from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a NumPy array in native byte order.

    Parameters
    ----------
    path
        Path to the ``*-idx?-ubyte`` or ``*-idx?-ubyte.gz`` file.

    Returns
    -------
    Array with the file's shape and dtype.

    Raises
    ------
    IDXError
        A subclass of ``ValueError``, if the magic number, dtype code, dimensions or file
        length are wrong.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXError(f"{path}: {len(data)} bytes is too short for an IDX header.")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise IDXError(f"{path}: bad magic number (first two bytes {data[:2]!r}, expected 0x0000).")
    if code not in _DTYPES:
        raise IDXError(f"{path}: unknown IDX dtype code 0x{code:02x}.")
    if ndim == 0:
        raise IDXError(f"{path}: IDX header declares 0 dimensions.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{path}: truncated header ({len(data)} bytes, needs {header}).")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise IDXError(
            f"{path}: file {kind}: {len(data)} bytes, but shape {shape} of {dtype.name} needs "
            f"{expected}."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    Parameters
    ----------
    path
        Destination file.
    array
        Array of uint8, int8, int16, int32, float32 or float64.

    Returns
    -------
    The path written.
    """
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise TypeError(f"IDX cannot store dtype {array.dtype}.")
    code = _CODES[native]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(_DTYPES[code], copy=False).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(payload)
    return path
