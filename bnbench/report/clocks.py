"""Whether a run's wall clock measured its work: a CPU run that shared its cores with other
work trained for more wall seconds than its computation took, and its time-to-target says
more about the machine's load than about the variant. The record holds both clocks over the
same training stretches (bnbench/callbacks/tracker.py): `train_s` (wall) and `train_cpu_s`
(the process's CPU time, all its threads). A run with `t` torch threads that had its cores to
itself gets about `t` CPU seconds per wall second; its *CPU share* is train_cpu_s / (train_s x t).
"""

from __future__ import annotations

import statistics

from bnbench.results.record import Record

SHARED_BELOW = 0.8  # a CPU share below this: the run waited for its cores a quarter of the time or more


def cpu_share(record: Record) -> float | None:
    """The run's CPU share while training; None off the CPU (a GPU run's CPU waits on the device)
    or where the record predates `train_cpu_s`."""
    env = record.env
    if env is None or env.device != "cpu" or not env.torch_threads or record.train_cpu_s is None or not record.train_s:
        return None
    return record.train_cpu_s / (record.train_s * env.torch_threads)


def clock_note(records: list[Record]) -> str | None:
    """One sentence for a report's header about its CPU runs' clocks; None where none recorded both."""
    shares = sorted(s for s in map(cpu_share, records) if s is not None)
    if not shares:
        return None
    shared = sum(s < SHARED_BELOW for s in shares)
    text = (f"CPU share while training (CPU seconds per wall second and torch thread): median {statistics.median(shares):.2f}, "
            f"lowest {shares[0]:.2f}, over {len(shares)} CPU run(s)")
    if shared:
        return (f"{text}. **{shared} run(s) had less than {SHARED_BELOW:.0%} of their cores** (other work shared "
                "them): their train times and time-to-target overstate their work and do not compare between "
                "variants; steps and accuracies are unaffected.")
    return f"{text}: every run had its cores to itself, so train times compare."
