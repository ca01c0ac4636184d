"""Fault injection for the tests of "nothing lost" (tests/test_resume.py): a run told, through
the environment, to die at a named point dies there with SIGKILL, as an out-of-memory kill or
a preempted node would take it: no handler, no cleanup.

    BNBENCH_FAULT=<point>[@<n>][:rank<r>]

kills the process the n-th time (default 1st) it passes `point`, on rank r only if given.
Points: `step-<k>` (after optimizer step k), `checkpoint-written` (a checkpoint written under
its temporary name, not yet renamed), `checkpoint-saved`, `trained` (training over, record not
yet written). Unset (always, outside tests): one environment lookup per checkpoint, and no
per-step callback at all (`step_faults()` is None).
"""

from __future__ import annotations

import os
import signal

ENV = "BNBENCH_FAULT"
_passes: dict[str, int] = {}


def step_faults():
    """A callback passing `step-<k>` after every optimizer step, if a step fault is asked for."""
    if not os.environ.get(ENV, "").startswith("step-"):
        return None
    import pytorch_lightning as pl

    class StepFaults(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            fault_point(f"step-{trainer.global_step}", trainer.global_rank)

    return StepFaults()


def fault_point(point: str, rank: int | None = None) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    where, _, only = spec.partition(":rank")
    name, _, nth = where.partition("@")
    if name != point or (only and rank is not None and int(only) != rank):
        return
    _passes[point] = _passes.get(point, 0) + 1
    if _passes[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
