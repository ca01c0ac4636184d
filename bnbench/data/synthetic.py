"""Random images and labels generated on the training device: throughput measurements only.

Accuracy on this data means nothing; what it gives is images per second with the input
pipeline out of the way (e.g. BN-Inception at 224x224 on a GPU, bf16, channels_last). Like every
data module it offers two evaluation sets, [validation, test] (bnbench.keys.EVAL_SETS):
`val_batches` and `eval_batches` batches, generated like the training batch from seeds of their
own.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from bnbench.data.ordering import MODES
from bnbench.data.position import ResumableLoader, split_position, trained_batches
from bnbench.data.ranks import per_rank_batch, rank_and_world
from bnbench.errors import ConfigError


class RandomBatches(IterableDataset):
    def __init__(self, shape: Sequence[int], num_classes: int, batch_size: int, batches: int, device, seed: int):
        self.shape, self.num_classes, self.batch_size, self.batches = tuple(shape), num_classes, batch_size, batches
        self.device, self.seed = device, seed
        self.skip = 0

    def __len__(self) -> int:
        return self.batches

    def seek(self, batches: int) -> None:
        """Every epoch is the same: only the batches left in this one matter."""
        self.skip = split_position(batches, self.batches)[1]

    def __iter__(self):
        g = torch.Generator(device=self.device).manual_seed(self.seed)
        x = torch.rand((self.batch_size, *self.shape), generator=g, device=self.device)
        y = torch.randint(0, self.num_classes, (self.batch_size,), generator=g, device=self.device)
        skip, self.skip = self.skip, 0
        for _ in range(self.batches - skip):  # the same batch again: generation stays off the clock
            yield x, y


class SyntheticDataModule(pl.LightningDataModule):
    def __init__(self, name: str, batch_size: int, in_shape: Sequence[int] = (3, 224, 224), num_classes: int = 1000,
                 batches_per_epoch: int = 1000, eval_batches: int = 2, val_batches: int = 2, shuffle: str = "global",
                 seed: int = 0, root: str | None = None):
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        if shuffle not in MODES:
            raise ConfigError(f"shuffle mode must be one of {MODES}, got {shuffle!r}")
        for key, value in (("batches_per_epoch", batches_per_epoch), ("eval_batches", eval_batches),
                           ("val_batches", val_batches), ("num_classes", num_classes)):
            if value < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {value}")
        self.name, self.batch_size, self.in_shape = name, batch_size, tuple(in_shape)
        self.num_classes, self.channels = num_classes, self.in_shape[0]
        self.batches_per_epoch, self.eval_batches, self.val_batches, self.seed = (batches_per_epoch, eval_batches,
                                                                                  val_batches, seed)

    def setup(self, stage: str | None = None) -> None:
        """Nothing to load: batches are generated where they are used."""

    def _device(self):
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _rank_batch(self) -> tuple[int, int]:
        """(this rank's slice of the global batch, a seed offset so ranks see different data)."""
        rank, world = rank_and_world(self.trainer)
        return per_rank_batch(self.batch_size, world), 1000 * rank

    def train_dataloader(self) -> DataLoader:
        b, offset = self._rank_batch()
        return ResumableLoader(RandomBatches(self.in_shape, self.num_classes, b, self.batches_per_epoch,
                                             self._device(), self.seed + offset), batch_size=None,
                               position=trained_batches(self), seed=self.seed)

    def val_dataloader(self) -> list[DataLoader]:
        """[validation, test]: each rank generates its own share of every batch (seed offset)."""
        b, offset = self._rank_batch()
        return [DataLoader(RandomBatches(self.in_shape, self.num_classes, b, batches, self._device(),
                                         self.seed + shift + offset), batch_size=None)
                for batches, shift in ((self.val_batches, 2), (self.eval_batches, 1))]

    def split_sizes(self) -> dict[str, int]:
        """Examples of one training epoch, of validation and of test (global batches)."""
        return {"train_size": self.batches_per_epoch * self.batch_size, "val_size": self.val_batches * self.batch_size,
                "test_size": self.eval_batches * self.batch_size}

    def fixed_batch(self, n: int) -> torch.Tensor:
        return torch.rand((n, *self.in_shape), generator=torch.Generator().manual_seed(self.seed))
