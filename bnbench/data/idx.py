"""Reader for the IDX files of MNIST and Fashion-MNIST (gzip-compressed or not).

Format (http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero bytes, a type
code (0x08 = unsigned byte) and the number of dimensions, then one int32 per dimension,
then the data. Every check names the file, so a corrupt download is a one-line error.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from bnbench.errors import DataError

UBYTE = 0x08


def find_idx(root: Path, stem: str) -> Path | None:
    """The file `stem` or `stem.gz` under `root`, whichever exists."""
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def read_idx(path: Path, expect_ndim: int) -> torch.Tensor:
    """Read an IDX file of unsigned bytes into a uint8 tensor, checking header and length."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read data file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"data file {path} is not an IDX file (bad magic number)")
    dtype, ndim = raw[2], raw[3]
    if dtype != UBYTE or ndim != expect_ndim:
        raise DataError(
            f"data file {path}: expected {expect_ndim}-d unsigned bytes, "
            f"header says type 0x{dtype:02x} with {ndim} dimensions"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"data file {path} is truncated (header incomplete)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise DataError(
            f"data file {path} is truncated or padded: header shape {tuple(shape)} needs "
            f"{size} bytes of data, file has {len(raw) - header}"
        )
    array = np.frombuffer(raw, dtype=np.uint8, count=size, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def write_idx(path: Path, data: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file (gzip if the name ends in .gz). Used by tests and tools."""
    array = data.to(torch.uint8).numpy()
    raw = bytes([0, 0, UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1) if path.suffix == ".gz" else raw)
