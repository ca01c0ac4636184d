"""Several training batches handed to Lightning as one (`run.steps_per_batch`, README "Speed").

Lightning's loop costs ~0.25 ms per batch on CPU, a third of the paper's MLP step: the
Classifier can take k optimizer steps per Lightning batch instead (bnbench/system.py), each on
one of the k consecutive batches a group holds, in the order the stream gives them. The stream
runs on across its epochs (each pass of the inner stream is one epoch, as when Lightning
restarts it), so a group may span two epochs and the sequence of batches is exactly the one
k = 1 trains on. Positions stay counted in batches of the inner stream (= optimizer steps:
bnbench/data/position.py); a group starts at a multiple of k, where every resume lands.
"""

from __future__ import annotations

import torch
from torch.utils.data import IterableDataset


class Groups(IterableDataset):
    """`k` consecutive batches of `stream` (an (inputs, labels) stream with `seek`) as one
    batch of k x B examples, without end."""

    def __init__(self, stream, k: int):
        self.stream, self.k = stream, k

    def seek(self, batches: int) -> None:
        self.stream.seek(batches)

    def __iter__(self):
        batches = self._batches()
        while True:
            xs, ys = zip(*(next(batches) for _ in range(self.k)))
            yield torch.cat(xs), torch.cat(ys)

    def _batches(self):
        while True:  # each pass of the inner stream is its next epoch
            yield from self.stream
