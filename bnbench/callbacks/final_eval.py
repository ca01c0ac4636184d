"""An evaluation at the last training step, always: `final_acc` is the accuracy at the end.

Lightning evaluates every `val_check_interval` (= `run.eval_every`) steps, so a run whose
`trainer.max_steps` is not a multiple of it would end without one (300 MLP steps with
`eval_every` 250: an evaluation at 250 only). At the last step this callback sets
`trainer.should_stop`; Lightning then runs its validation loop at that step, as it does for any
run asked to stop (early stopping), and ends training. The evaluation is Lightning's own: it runs
on every rank of a DDP run (a collective, with the averaged BN statistics of
callbacks/sync_stats.py) and through the same hooks (RunTracker records it). When the last step
is an evaluation step anyway, Lightning evaluates once, not twice.

A run that ends before `trainer.max_steps` for another reason (`trainer.max_epochs`, `max_time`)
is evaluated after `fit` by train.py; a diverged run stops where it diverged and has no
`final_acc`.
"""

from __future__ import annotations

import pytorch_lightning as pl


class FinalEvaluation(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # global_step counts optimizer steps and has been advanced by this batch's step; every
        # rank sees the same value, so every rank stops and evaluates here together
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True
