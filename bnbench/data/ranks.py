"""How N processes share one run's data: a slice of every global batch, a block of each
evaluation set (validation and test).

Training: `recipe.batch_size` is the global batch (the examples one optimizer step sees).
Rank r of N takes positions [r*b, (r+1)*b) of every global batch, b = global / N, so the N
ranks together see exactly the batches a one-process run sees, in the same order; with
`norm.stats=device` each rank's slice is its BN batch, which is also what a one-process run
with `norm.stats=ghost norm.ghost_size=b` normalizes over (tested).

Evaluation: rank r evaluates a contiguous block of each evaluation set, the blocks as equal as
they can be, so every example counts exactly once whatever N is (no padding, unlike
DistributedSampler); torchmetrics sums the counts over ranks.
"""

from __future__ import annotations

import torch


def rank_and_world(trainer) -> tuple[int, int]:
    """(global rank, world size) of the attached Trainer; (0, 1) without one."""
    if trainer is None:
        return 0, 1
    return trainer.global_rank, trainer.world_size


def per_rank_batch(global_batch: int, world: int) -> int:
    if global_batch % world:
        raise ValueError(f"global batch {global_batch} is not divisible by {world} processes")
    return global_batch // world


def rank_order(order: torch.Tensor, global_batch: int, rank: int, world: int) -> torch.Tensor:
    """This rank's share of one epoch's order: its slice of every full global batch, in batch
    order (the last, partial global batch is dropped, as a one-process run drops it)."""
    b = per_rank_batch(global_batch, world)
    batches = len(order) // global_batch
    return order[: batches * global_batch].view(batches, world, b)[:, rank].reshape(-1)


def eval_block(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of the held-out examples rank `rank` evaluates: n split in `world`
    contiguous blocks whose sizes differ by at most one."""
    return rank * n // world, (rank + 1) * n // world
