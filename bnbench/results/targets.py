"""Steps- and time-to-target from a run's evaluation curve, and the robust statistics of a curve
that reports and verdicts read (bnbench/report/summary.py, claims.py).

**The accuracy series used for selection** (targets, steps-to-target, end and peak accuracy) is
chosen in one place: `SELECTION` / `selection_curve`. It is the validation accuracy of every
evaluation, `curves["acc"]` (a part of the training set held out: bnbench/data/split.py); the
test accuracy beside it, `curves["test_acc"]`, is never selected on.

**Robust statistics.** A single evaluation is noisy (on Fashion-MNIST, evaluations 250 steps
apart on a plateau differ by a few tenths of a point), so no statistic here rests on one:

* `smoothed`: the centred moving average over `WINDOW` evaluations. Centred, not trailing, so
  a steadily rising curve is not delayed by half a window; the window shrinks symmetrically at
  the start, and the smoothed curve ends with the last full window (its last value averages
  the last `WINDOW` evaluations; a single late evaluation is never read alone).
* `end_level`: the mean of the last `WINDOW` evaluations (the smoothed curve's last value):
  where the run ended. The reference's target is this (summary.py), not its best evaluation
  (a maximum over many noisy evaluations, reached late on a plateau by a lucky draw).
* `peak_level`: the smoothed curve's highest value: the run's best accuracy.
* `late_gain`: the end level less the end level a quarter of the run earlier: whether a run
  still climbs at its end (a budget too short for its schedule) or sits on a plateau.
* `reach`: the first evaluation at which the smoothed curve reaches a target, read as the
  interval it is: the curve got there after the evaluation before and by this one,
  (previous evaluation's step, this step] (the first evaluation's interval starts at step 0).
  A run reaches a target exactly when its peak level is at least the target, and always
  reaches its own end level.

`first_reaching`/`reach_table` (a raw curve's first evaluation at or above a target) are what a
run's record keeps for the recipe's absolute `run.targets` (bnbench/train.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from bnbench.results.record import Curves, Record

SELECTION = "acc"  # the curves' series that targets and verdicts select on
WINDOW = 5  # evaluations averaged by every robust statistic (odd: a centred window)
EPS = 1e-9  # "reaches": at least the target less float noise (a mean of equal values may exceed them)


def selection_curve(record: Record | Mapping) -> tuple[list, list]:
    """(steps, accuracies) of the series used for selection (`SELECTION`); missing: empty."""
    curves = Record.of(record).curves or Curves()
    steps, accs = list(curves.step or []), list(curves.get(SELECTION) or [])  # a field or an extra series
    n = min(len(steps), len(accs))
    return steps[:n], accs[:n]


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def _mean(xs: Iterable) -> float | None:
    xs = [x for x in xs if _finite(x)]
    return sum(xs) / len(xs) if xs else None


def _half_width(n: int, window: int) -> int:
    """The smoothing window's half-width for a curve of n evaluations (smaller for short curves)."""
    return max(0, min(window // 2, (n - 1) // 2))


def smoothed(accs: Sequence, window: int = WINDOW) -> list[float | None]:
    """The centred moving average: value i is the mean of evaluations i-h..i+h, h = window // 2.
    At the start the window shrinks symmetrically (the first value is the first evaluation
    alone, so an early crossing is not credited with later evaluations); the curve stops h
    evaluations before the end, where its last value averages the last full window (the last
    evaluations enter only through it, never alone). Missing evaluations (None, non-finite) are
    left out of the means. Curves shorter than a window use the widest centred window that fits."""
    n = len(accs)
    h = _half_width(n, window)
    return [_mean(accs[i - min(h, i): i + min(h, i) + 1]) for i in range(n - h)]


def end_level(accs: Sequence, window: int = WINDOW) -> float | None:
    """Where the curve ended: the mean of its last `window` evaluations (the smoothed curve's
    last value; for a curve shorter than a window, of the last odd number of them)."""
    s = smoothed(accs, window)
    return s[-1] if s else None


def peak_level(accs: Sequence, window: int = WINDOW) -> float | None:
    """The curve's best accuracy: the smoothed curve's highest value (a target is reached
    exactly when it is at most this)."""
    s = [x for x in smoothed(accs, window) if x is not None]
    return max(s) if s else None


def late_gain(steps: Sequence, accs: Sequence, fraction: float = 0.25, window: int = WINDOW) -> float | None:
    """How much the curve still rose over the last `fraction` of its steps: its end level minus
    its end level at the last evaluation before that stretch (both means of `window`
    evaluations). Near 0 on a plateau; a run still climbing shows it (a budget too short for
    its schedule). None when that stretch holds fewer than `window` evaluations on each side."""
    if not steps:
        return None
    cut = (1 - fraction) * steps[-1]
    early = [a for s, a in zip(steps, accs) if s <= cut]
    if len(early) < window or len(accs) - len(early) < window:
        return None
    end, before = end_level(accs, window), end_level(early, window)
    return None if end is None or before is None else end - before


def reach_index(accs: Sequence, target: float, window: int = WINDOW) -> int | None:
    """The index of the first evaluation at which the smoothed curve reaches `target`, else None."""
    for i, s in enumerate(smoothed(accs, window)):
        if s is not None and s >= target - EPS:
            return i
    return None


def reach(steps: Sequence, accs: Sequence, target: float, window: int = WINDOW) -> tuple[float, float] | None:
    """(after, by): the smoothed curve first reaches `target` at the evaluation at step `by`, so
    the run got there after the previous evaluation (`after`; 0 before the first) and by that
    one. None if it never does."""
    i = reach_index(accs, target, window)
    if i is None:
        return None
    return (steps[i - 1] if i else 0), steps[i]


def first_reaching(xs: Sequence, accs: Sequence[float], target: float):
    """The x (step or seconds) of the first evaluation with accuracy >= target, else None."""
    for x, acc in zip(xs, accs):
        if acc is not None and acc >= target:
            return x
    return None


def target_key(target: float) -> str:
    """JSON object keys are strings: 0.85 -> "0.85" (no float noise)."""
    return f"{target:g}"


def reach_table(xs: Sequence, accs: Sequence[float], targets: Iterable[float]) -> dict[str, object]:
    """{target: first x reaching it, or None}."""
    return {target_key(t): first_reaching(xs, accs, t) for t in targets}
