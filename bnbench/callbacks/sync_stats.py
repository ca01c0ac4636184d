"""Inference statistics of a multi-process run: the average over ranks of the moving averages.

bnbench trains DDP without buffer sync in the forward pass (`forward_sync_buffers=False`;
`broadcast_buffers=False` before torch 2.13: bnbench.parallel), so each rank's BN layers keep moving
averages of the batches *they* normalized (with `norm.stats=global` those are identical on
every rank). Before every evaluation all ranks replace them by their average over ranks, so
the ranks evaluate their blocks of the held-out set with the same statistics: an estimate over
N times as many batches as one rank saw. (DDP's default would instead copy rank 0's buffers to
every rank before each training forward pass, throwing the other ranks' away.) Training is not
affected: in training mode BN uses the batch's own statistics.
"""

from __future__ import annotations

import pytorch_lightning as pl

from bnbench.nn.sync import average_running_stats


class AverageRunningStats(pl.Callback):
    def on_validation_start(self, trainer, pl_module):
        average_running_stats(pl_module.model)
