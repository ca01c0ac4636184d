"""Side-by-side timing for the benchmarks: candidates interleaved round by round, medians compared."""

from __future__ import annotations

import statistics
import time

import pytest
import torch


def side_by_side(fns: dict, rounds: int, inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, interleaved round by round."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t) / inner)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(benchmark, title: str, medians: dict[str, float], unit: str = "us", scale: float = 1e6) -> None:
    names = list(medians)
    ratio = medians[names[0]] / medians[names[1]]
    benchmark.extra_info.update({f"median_{k}_s": v for k, v in medians.items()})
    benchmark.extra_info[f"ratio_{names[0]}_over_{names[1]}"] = ratio
    parts = ", ".join(f"{k} {v * scale:.1f} {unit}" for k, v in medians.items())
    print(f"\n[bench] {title}: {parts}; {names[0]}/{names[1]} = {ratio:.3f}")


@pytest.fixture
def one_thread():
    """One torch thread, as in a study job on CPU (`run.threads=1`) and a DataLoader worker
    (torch sets 1 there): the CPU benchmarks that use it measure a single core. (Here, not in a
    conftest.py: a second conftest module would shadow tests/conftest.py's helpers.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
