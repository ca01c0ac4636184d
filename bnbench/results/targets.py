"""Steps- and time-to-target from a run's evaluation curve."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


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
