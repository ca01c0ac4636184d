"""How much the input to a sigmoid moves over training (Fig. 1b, c), from a run's probe.

The probe holds, before any update (step 0) and at every evaluation, the 15th/50th/85th
percentiles of each unit's input over a fixed batch: an array (probes, 3, units), taken at
`curves["probe_step"]` (records from before the step-0 probe: at the evaluation steps, the first
probe at the first evaluation). Shifts are measured in units of the unit's own spread at the
first probe (85th minus 15th percentile), so networks whose activations have different scales
compare fairly.

Two statistics of the median's movement, per unit, then the median over units:
* `shift`: where it ended, |median_last - median_first|;
* `path`: how far it travelled, the sum of |median_t - median_t-1| over the whole path, which
  also counts a median that wandered off and came back (what Fig. 1(b, c) shows as instability).
"""

from __future__ import annotations

import numpy as np


def as_array(probe: list) -> np.ndarray:
    return np.asarray(probe, dtype=float)  # (T, 3, U)


def probe_steps(curves: dict) -> list[int]:
    """The steps at which the probes were taken."""
    if curves.get("probe_step"):
        return list(curves["probe_step"])
    return list(curves["step"][: len(curves.get("probe") or [])])


def path_length(p: np.ndarray) -> np.ndarray:
    """(U,): sum over the path of |median_t - median_t-1| / spread_first for each unit."""
    spread0 = p[0, 2] - p[0, 0]
    return np.abs(np.diff(p[:, 1], axis=0)).sum(0) / np.maximum(spread0, 1e-12)


def shift_over_time(p: np.ndarray) -> np.ndarray:
    """(T, U): |median_t - median_first| / spread_first for each unit."""
    spread0 = p[0, 2] - p[0, 0]
    return np.abs(p[:, 1] - p[0, 1]) / np.maximum(spread0, 1e-12)


def spread_ratio(p: np.ndarray) -> np.ndarray:
    """(U,): spread at the last evaluation / spread at the first."""
    return (p[-1, 2] - p[-1, 0]) / np.maximum(p[0, 2] - p[0, 0], 1e-12)


def typical_unit(p: np.ndarray) -> int:
    """The unit whose final shift is the median over units: a "typical" unit, chosen by rule."""
    final = shift_over_time(p)[-1]
    return int(np.argsort(final)[len(final) // 2])


def drift_summary(probe: list) -> dict | None:
    """Median over units of the final shift, the path length and the spread ratio (None without
    a probe)."""
    if not probe or len(probe) < 2:
        return None
    p = as_array(probe)
    return {
        "shift": float(np.median(shift_over_time(p)[-1])),
        "path": float(np.median(path_length(p))),
        "spread_ratio": float(np.median(spread_ratio(p))),
        "typical_unit": typical_unit(p),
    }
