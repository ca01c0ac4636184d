"""The order in which training examples are read each epoch (Sec. 4.2.1, modification 6).

A sharded input pipeline stores the training set in shards and, without further care, reads
the examples of a shard in their stored order: the shard order changes from epoch to epoch,
but the same examples keep landing in the same mini-batches. The paper's fix is to shuffle
within shards ("within_shard"); "global" goes further, with a full permutation each epoch.

`co_batch_rate` is the measurable: of the pairs of examples that share a mini-batch in one
epoch, the fraction that share one again in the next.
"""

from __future__ import annotations

import torch

from bnbench.schema import SHUFFLE_MODES as MODES  # the shuffle group's choices, defined once


def shard_bounds(n: int, num_shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges splitting n stored examples into num_shards shards."""
    edges = [i * n // num_shards for i in range(num_shards + 1)]
    return list(zip(edges[:-1], edges[1:]))


def epoch_order(mode: str, n: int, num_shards: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of the n training examples in the order one epoch reads them."""
    if mode == "global":
        return torch.randperm(n, generator=generator)
    if mode not in MODES:
        raise ValueError(f"unknown shuffle mode {mode!r}; expected one of {MODES}")
    bounds = shard_bounds(n, num_shards)
    parts = []
    for s in torch.randperm(len(bounds), generator=generator).tolist():
        start, stop = bounds[s]
        if mode == "within_shard":
            parts.append(start + torch.randperm(stop - start, generator=generator))
        else:
            parts.append(torch.arange(start, stop))
    return torch.cat(parts)


def co_batch_rate(order_a: torch.Tensor, order_b: torch.Tensor, batch_size: int) -> float:
    """Fraction of the example pairs sharing a batch in epoch a that share one in epoch b.

    Only full batches count (the loader drops the last partial one). For `global` the
    expectation is (batch_size - 1) / (n - 1); for `shard` with shard sizes divisible by the
    batch size it is 1.
    """
    n_batches = len(order_a) // batch_size
    used = n_batches * batch_size
    batch_a = torch.full((len(order_a),), -1, dtype=torch.long)
    batch_b = torch.full((len(order_b),), -1, dtype=torch.long)
    batch_a[order_a[:used]] = torch.arange(used) // batch_size
    batch_b[order_b[:used]] = torch.arange(used) // batch_size
    both = (batch_a >= 0) & (batch_b >= 0)
    key = batch_a[both] * (n_batches + 1) + batch_b[both]
    counts = torch.bincount(key).double()
    shared_again = (counts * (counts - 1) / 2).sum().item()
    pairs = n_batches * batch_size * (batch_size - 1) / 2
    return shared_again / pairs
