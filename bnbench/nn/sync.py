"""Inference statistics under multi-process training: an average over ranks.

With `norm.stats=device` (or `ghost`) every rank's BN layers keep moving averages of their
own batches, so the ranks end training with different running statistics (DDP's
`broadcast_buffers` would instead silently keep rank 0's). bnbench defines the inference
statistics of such a run as the average over ranks of each rank's estimates; after Alg. 2's
population pass (`bnbench.nn.population`), as the average of the ranks' population
statistics -- with equal-sized batches on every rank, Alg. 2's average over all of them.
With `norm.stats=global` the ranks' estimates are already identical and averaging keeps them.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from bnbench.nn.norm import is_batch_norm


@torch.no_grad()
def average_running_stats(model: nn.Module, group=None) -> int:
    """Replace running_mean and running_var of every BN layer (own and torch's) by their mean over ranks.

    A collective: every rank of `group` (default: the world) must call it on the same
    architecture. A no-op returning 0 without an initialized process group or with one
    process; otherwise returns the number of layers averaged (layers without running
    statistics, torch's track_running_stats=False, are skipped). num_batches_tracked is left
    alone. One all_reduce per (device, dtype) of all the buffers concatenated.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    world = dist.get_world_size(group)
    if world <= 1:
        return 0
    buffers: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    layers = 0
    for module in model.modules():
        if is_batch_norm(module) and module.running_mean is not None:
            layers += 1
            for buf in (module.running_mean, module.running_var):
                buffers.setdefault((buf.device, buf.dtype), []).append(buf)
    for bufs in buffers.values():
        flat = torch.cat([b.reshape(-1) for b in bufs])
        dist.all_reduce(flat, group=group)  # SUM: ReduceOp.AVG is NCCL-only
        flat /= world
        for buf, avg in zip(bufs, flat.split([b.numel() for b in bufs])):
            buf.copy_(avg.view_as(buf))
    return layers
