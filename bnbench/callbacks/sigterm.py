"""Under submitit, a SIGTERM handler with no collective call in it.

At the start of every fit Lightning installs a SIGTERM handler of its own in front of the one
already there, whatever the cluster environment says about requeueing
(`_SignalConnector.register_signal_handlers`; `SLURMEnvironment(auto_requeue=False)` turns off
only its requeue). Besides setting `trainer.received_sigterm`, that handler calls
`torch.distributed.broadcast` from inside the signal handler in a multi-process run. Under
submitit this breaks the requeue: on SIGUSR2, submitit's handler on rank 0 runs `scontrol
requeue`; SLURM then sends SIGTERM to every task; Lightning's handler runs nested in submitit's,
and its broadcast waits for (or fails on) a rank that has already left, so rank 0's handler can
die before it finishes (seen on the test cluster under load: the job was requeued, but
submitit's "Requeued job" line was lost). submitit owns preemption in bnbench (README, "Running
on a SLURM cluster"; ../shared/PITFALLS.md: "let exactly one own it").

So once Lightning has installed its handler (after `on_fit_start`, before `on_train_start`),
this callback replaces it with one that only sets the flag and then calls the handler that was
there before the fit (submitit's, which logs the signal and goes on). The stop itself stays
Lightning's: at its next step rank 0 broadcasts the flag from the training loop, every rank
raises SIGTERMException together, and bnbench writes no record for the interrupted run (a
cancelled job, `scancel`, ends that way; a requeued one resumes from its checkpoint). Lightning
restores the handler from before the fit when the fit ends.
"""

from __future__ import annotations

import os
import signal
import threading

import pytorch_lightning as pl


def under_submitit() -> bool:
    """True in a job that submitit started (its job script exports SUBMITIT_EXECUTOR)."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


class SigtermWithoutCollectives(pl.Callback):
    def __init__(self) -> None:
        self._before = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._before = signal.getsignal(signal.SIGTERM)

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal works on the main thread only, where Lightning installed its own
        before, connector = self._before, trainer._signal_connector  # `trainer.received_sigterm` reads its flag

        def on_sigterm(signum, frame):
            connector.received_sigterm = True
            if callable(before):
                before(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)
