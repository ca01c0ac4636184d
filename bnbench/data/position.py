"""Where a training stream is, so a resumed run reads exactly the batches an uninterrupted one
would have read next (README, "Killed runs resume").

Every bnbench training stream is a pure function of (seed, epoch, position in the epoch):
in_memory's BatchStream, imagefolder's EpochSampler, synthetic's RandomBatches. So the
position is all a checkpoint needs: the number of batches trained on so far, which is the
trainer's `global_step` (one optimizer step per batch). The loader's own count would be wrong
by the batch Lightning prefetches.

`ResumableLoader` is a DataLoader that Lightning checkpoints with the loop state (its
"stateful loader" protocol: `state_dict` / `load_state_dict`) and, on resume, restores before
it first iterates: the stream starts at epoch `b // batches_per_epoch` and skips
`b % batches_per_epoch` batches of it without reading them.

The loader draws its iterator's base seed from a generator of its own (`seed`), not from
torch's global generator, which dropout and the distortions use: an iterator started at a
different moment (a resume at an epoch boundary) then cannot shift their random numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader


class ResumableLoader(DataLoader):
    def __init__(self, *args, position: Callable[[], int], seed: int = 0, **kwargs):
        super().__init__(*args, generator=torch.Generator().manual_seed(seed), **kwargs)
        self.position = position

    def _stream(self):
        """The part that knows the epoch order: the sampler (map-style data) or the dataset."""
        for part in (self.sampler, self.dataset):
            if hasattr(part, "seek"):
                return part
        raise TypeError(f"{type(self.dataset).__name__} cannot be resumed: neither it nor its sampler has seek()")

    def state_dict(self) -> dict:
        return {"batches": int(self.position())}

    def load_state_dict(self, state: dict) -> None:
        self._stream().seek(int(state["batches"]))


def trained_batches(datamodule) -> Callable[[], int]:
    """The position of a data module's training stream: its trainer's optimizer steps."""
    return lambda: datamodule.trainer.global_step if datamodule.trainer is not None else 0


def split_position(batches: int, per_epoch: int) -> tuple[int, int]:
    """(epoch, batches of it already trained on) after `batches` batches of `per_epoch` each."""
    if per_epoch < 1:
        raise ValueError("an epoch has at least one batch")
    return divmod(batches, per_epoch)
