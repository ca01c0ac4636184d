"""MNIST-format datasets (MNIST, Fashion-MNIST) held in memory as tensors.

The whole training set lives in one tensor (on the training device once the Trainer is
attached) and batches are cut from it by index: no per-sample collation, which is what makes
a DataLoader the bottleneck for a model as small as the paper's MLP.

Three sets: training and validation are the two parts of the training file (data/split.py:
`data.val_size` examples held out by a permutation seeded with `data.val_seed`), the test set is
the t10k file. Evaluation gives Lightning two loaders, [validation, test] (bnbench.keys.EVAL_SETS).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from bnbench.data.groups import Groups
from bnbench.data.idx import locate_idx, read_idx
from bnbench.data.ordering import MODES, epoch_order
from bnbench.data.position import ResumableLoader, split_position, trained_batches
from bnbench.data.ranks import eval_block, rank_and_world, rank_order
from bnbench.data.split import check_split, check_val_size, split_indices
from bnbench.errors import ConfigError, DataError

SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def locate_files(name: str, root: str | None, install_hint: str) -> dict[str, tuple[Path, Path]]:
    """Paths of the four IDX files, or a DataError saying where we looked and how to get them."""
    if root is None:
        raise DataError(f"data={name} needs data.root: a folder holding the four IDX files. {install_hint}")
    folder = Path(root).expanduser()
    stems = [stem for pair in SPLITS.values() for stem in pair]
    found = locate_idx(folder, name, stems, f"data={name}, data.root={folder}", install_hint)  # idx.LAYOUTS
    return {split: tuple(found[stem] for stem in pair) for split, pair in SPLITS.items()}


def load_split(images: Path, labels: Path, binarize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 (N, 1, 28, 28) in [0, 1] (or {0, 1} when binarized), labels as int64.

    Read once per process and file version: `bnbench train` checks the data before Hydra starts
    the job (bnbench/preflight.py) and the job, in the same process, reuses what was read
    (Fashion-MNIST: ~0.5 s saved). Nothing modifies the tensors in place."""
    return _load_split(_version(images), _version(labels), binarize)


def load_training(images: Path, labels: Path, binarize: bool, val_size: int, val_seed: int) -> tuple[tuple, tuple]:
    """The training file as (training part, validation part), each (images, labels) as
    load_split gives them, split by data/split.py. Cached like load_split; only the two parts
    are kept (the whole file is not held a second time)."""
    return _load_training(_version(images), _version(labels), binarize, val_size, val_seed)


def _version(path: Path) -> tuple[str, int, int]:
    st = Path(path).stat()
    return str(path), st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=1)  # the test file
def _load_split(images_version: tuple, labels_version: tuple, binarize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return _read_split(Path(images_version[0]), Path(labels_version[0]), binarize)


@functools.lru_cache(maxsize=1)  # the training file, split
def _load_training(images_version: tuple, labels_version: tuple, binarize: bool, val_size: int, val_seed: int):
    x, y = _read_split(Path(images_version[0]), Path(labels_version[0]), binarize)
    train, val = split_indices(len(y), val_size, val_seed)
    return (x[train], y[train]), (x[val], y[val])


def _read_split(images: Path, labels: Path, binarize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = read_idx(images, expect_ndim=3)
    y = read_idx(labels, expect_ndim=1)
    if len(x) != len(y):
        raise DataError(f"data files disagree: {images} has {len(x)} images, {labels} has {len(y)} labels")
    # Sec. 4.1 feeds "binary images"; the paper does not say how they were binarised. We
    # threshold at half intensity.
    x = (x >= 128).float() if binarize else x.float().div_(255.0)
    return x.unsqueeze(1), y.long()


class BatchStream(IterableDataset):
    """Full mini-batches of one epoch, in the order `shuffle` prescribes (drop-last).

    The epoch counter advances on every pass, so each epoch gets its own order from
    (seed, epoch): the same seed reproduces the same sequence of batches. `batch_size` is the
    global batch; rank `rank` of `world` processes gets its slice of each (data/ranks.py).
    `seek` places the stream after a number of batches (a resumed run: data/position.py).
    """

    def __init__(self, images, labels, batch_size: int, shuffle: str, num_shards: int, seed: int,
                 rank: int = 0, world: int = 1):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.num_shards, self.seed = batch_size, shuffle, num_shards, seed
        self.rank, self.world = rank, world
        self.epoch, self.skip = 0, 0

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def seek(self, batches: int) -> None:
        self.epoch, self.skip = split_position(batches, len(self))

    def order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return epoch_order(self.shuffle, len(self.labels), self.num_shards, g)

    def __iter__(self):
        order = rank_order(self.order(self.epoch), self.batch_size, self.rank, self.world).to(self.images.device)
        skip, self.skip = self.skip, 0
        self.epoch += 1
        for idx in order.view(len(self), -1)[skip:]:
            # index_select, not images[idx]: the same batch in a third of the time (~6 us vs ~18 us)
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)


class Chunks(IterableDataset):
    """An evaluation set (validation or test) in consecutive chunks (every example exactly
    once); under N processes, this rank's contiguous block of it (data/ranks.py)."""

    def __init__(self, images, labels, chunk: int, rank: int = 0, world: int = 1):
        start, stop = eval_block(len(labels), rank, world)
        self.images, self.labels, self.chunk = images[start:stop], labels[start:stop], chunk

    def __len__(self) -> int:
        return -(-len(self.labels) // self.chunk)

    def __iter__(self):
        for i in range(0, len(self.labels), self.chunk):
            yield self.images[i : i + self.chunk], self.labels[i : i + self.chunk]


class IDXDataModule(pl.LightningDataModule):
    """MNIST or Fashion-MNIST from local IDX files: training on the training file less
    `val_size` held-out examples, selection on those, and the 10,000-image test set beside."""

    num_classes = 10
    in_shape = (1, 28, 28)
    channels = 1
    steps_per_batch = 1  # >1: training batches handed to Lightning in groups (data/groups.py; train.py sets it)

    def __init__(
        self,
        name: str,
        root: str | None,
        batch_size: int,
        eval_batch_size: int = 2000,
        binarize: bool = False,
        shuffle: str = "global",
        num_shards: int = 70,
        seed: int = 0,
        install_hint: str = "",
        val_size: int = 4000,
        val_seed: int = 0,
    ):
        super().__init__()
        check_val_size(val_size, val_seed)
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        if shuffle not in MODES:
            raise ConfigError(f"shuffle mode must be one of {MODES}, got {shuffle!r}")
        if num_shards < 1:
            raise ConfigError(f"data.num_shards must be >= 1, got {num_shards}")
        if eval_batch_size < 1:
            raise ConfigError(f"data.eval_batch_size must be >= 1, got {eval_batch_size}")
        self.name, self.root, self.binarize = name, root, binarize
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.shuffle, self.num_shards, self.seed = shuffle, num_shards, seed
        self.install_hint = install_hint
        self.val_size, self.val_seed = val_size, val_seed
        self.files = locate_files(name, root, install_hint)
        self.train_set: tuple[torch.Tensor, torch.Tensor] | None = None
        self.val_set: tuple[torch.Tensor, torch.Tensor] | None = None
        self.test_set: tuple[torch.Tensor, torch.Tensor] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            train, val = load_training(*self.files["train"], self.binarize, self.val_size, self.val_seed)
            check_split(len(train[1]) + len(val[1]), self.val_size, self.batch_size, self.files["train"][0])
            self.train_set, self.val_set = train, val
            self.test_set = load_split(*self.files["test"], self.binarize)

    def split_sizes(self) -> dict[str, int]:
        """Examples trained on, selected on (validation) and reported beside (test)."""
        self.setup()
        return {"train_size": len(self.train_set[1]), "val_size": len(self.val_set[1]),
                "test_size": len(self.test_set[1])}

    def _on_device(self) -> None:
        """Move the tensors to the training device once, so batches are cut where they are used."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.train_set[0].device != device:
            self.train_set = tuple(t.to(device) for t in self.train_set)
            self.val_set = tuple(t.to(device) for t in self.val_set)
            self.test_set = tuple(t.to(device) for t in self.test_set)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        self._on_device()
        stream = BatchStream(*self.train_set, self.batch_size, self.shuffle, self.num_shards, self.seed,
                             *rank_and_world(self.trainer))
        if self.steps_per_batch > 1:
            stream = Groups(stream, self.steps_per_batch)
        return ResumableLoader(stream, batch_size=None, position=trained_batches(self), seed=self.seed)

    def val_dataloader(self) -> list[DataLoader]:
        """[validation, test] (bnbench.keys.EVAL_SETS), each in chunks, each split over ranks."""
        self.setup()
        self._on_device()
        ranks = rank_and_world(self.trainer)
        return [DataLoader(Chunks(*part, self.eval_batch_size, *ranks), batch_size=None)
                for part in (self.val_set, self.test_set)]

    def fixed_batch(self, n: int) -> torch.Tensor:
        """The first n test images: the fixed batch the activation probe looks at."""
        self.setup()
        return self.test_set[0][:n]

    def train_order(self, epoch: int) -> torch.Tensor:
        """The order in which training epoch `epoch` reads the examples."""
        self.setup()
        return BatchStream(*self.train_set, self.batch_size, self.shuffle, self.num_shards, self.seed).order(epoch)
