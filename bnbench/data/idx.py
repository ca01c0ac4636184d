"""Reader for the IDX files of MNIST and Fashion-MNIST (gzip-compressed or not), and where
other tools leave them on disk.

Format (http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero bytes, a type
code (0x08 = unsigned byte) and the number of dimensions, then one int32 per dimension,
then the data. Every check names the file, so a corrupt download is a one-line error.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bnbench.errors import DataError

UBYTE = 0x08
# Folders under data.root that may hold a dataset's four files, in the order searched (the first
# holding all four wins): data.root itself (the files side by side, as Debian's
# dataset-fashion-mnist and the MNIST site give them, or torchvision's raw/ folder itself);
# torchvision's <root>/MNIST/raw/ and <root>/FashionMNIST/raw/, or raw/ when data.root is the
# MNIST or FashionMNIST folder; the Fashion-MNIST repository's data/fashion/ (and data/mnist/,
# where its README asks for MNIST), data.root being the clone or its data/; fashion-mnist/ when
# data.root is Keras's ~/.keras/datasets or Debian's /usr/share/datasets.
LAYOUTS = {
    "mnist": (".", "MNIST/raw", "raw", "data/mnist", "mnist"),
    "fashion_mnist": (".", "FashionMNIST/raw", "raw", "data/fashion", "fashion", "fashion-mnist"),
}
OTHER_LAYOUTS = (".", "raw")  # a dataset bnbench knows no other tools' layouts of


def find_idx(root: Path, stem: str) -> Path | None:
    """The file `stem` under `root`, gzip-compressed (`stem.gz`) or not, also with a dot for the
    dash before `idx` (`train-images.idx3-ubyte`, as unpacked copies of the MNIST site's files
    are often named); the first that exists in that order, or None."""
    dotted = ".idx".join(stem.rsplit("-idx", 1))
    for name in dict.fromkeys((f"{stem}.gz", stem, f"{dotted}.gz", dotted)):
        if (root / name).is_file():
            return root / name
    return None


def idx_folders(root: Path, name: str) -> list[Path]:
    """The folders searched for dataset `name`'s files under `root` (LAYOUTS), in order."""
    return [root / sub for sub in LAYOUTS.get(name, OTHER_LAYOUTS)]  # root / "." is root


def locate_idx(root: Path, name: str, stems: Sequence[str], context: str, hint: str) -> dict[str, Path]:
    """Each of `stems` (find_idx) in the first of idx_folders(root, name) that holds them all.

    Else a one-line DataError naming the first missing file: in the first folder holding any of
    them (the one meant, with files missing), or under `root` itself with the other folders
    searched; `context` (e.g. "data=mnist, data.root=...") and `hint` (how to get the files)
    complete it."""
    folders = idx_folders(root, name)
    partial = None
    for folder in folders:
        found = {stem: find_idx(folder, stem) for stem in stems}
        if all(found.values()):
            return found
        if partial is None and any(found.values()):
            partial = folder, found
    if partial is not None:  # the folder meant, with files missing
        (folder, found), where = partial, context
    else:
        folder, found = root, dict.fromkeys(stems)
        others = ", ".join(f"{f.relative_to(root)}/" for f in folders if f != root)
        where = (f"{context}; no such folder" if not root.is_dir()
                 else f"{context}; also looked in {others} under it" if others else context)
    missing = next(stem for stem in stems if found[stem] is None)
    raise DataError(f"data file not found: {folder / missing}(.gz) ({where}). {hint}".rstrip())


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
