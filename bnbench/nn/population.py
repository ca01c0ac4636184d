"""Population statistics for inference (Alg. 2, steps 8-10).

After training, the network is run over K training mini-batches in training mode (without
gradients or parameter updates); each BN layer averages the K batch means and the K unbiased
batch variances m/(m-1) * var_B. Both BN implementations do this when momentum is None.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import torch
from torch import nn

from bnbench.nn.norm import is_batch_norm


@torch.no_grad()
def estimate_population_statistics(model: nn.Module, batches: Iterable, num_batches: int) -> int:
    """Replace every BN layer's running statistics by Alg. 2's averages over `num_batches`.

    `batches` yields (x, y) or x; returns how many batches were used (0 leaves the layers'
    statistics as they were). Every module's training flag and each layer's momentum are
    restored afterwards.
    """
    layers = [m for m in model.modules() if is_batch_norm(m)]
    if not layers:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = [m.momentum for m in layers]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    # Only the BN layers go to training mode: dropout and the rest stay as at inference.
    model.eval()
    for m in layers:
        m.train()
    used = 0
    try:
        for batch in islice(batches, num_batches):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x)
            used += 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training
        if used == 0:  # nothing to average: keep the statistics the layers had
            for m, (mean, var, count) in zip(layers, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
    return used
