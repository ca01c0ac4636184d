"""Per-run rows and per-variant summaries, relative to the study's reference variant.

Target: the reference variant's best accuracy *for the same seed* (and grid cell), as the
paper's target is its baseline's best (72.2%). Each run's steps-to-target is the first
evaluation reaching it; the reference's own is the step of its best. Speed-up ratios are
paired by seed: reference steps / variant steps. A run that never reaches the target is
censored (counted, never dropped).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from bnbench.results.targets import first_reaching


def lookup(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def cell_of(record: dict, grid_keys: list[str]) -> tuple:
    return tuple(lookup(record["config"], k) for k in grid_keys)


@dataclass
class Row:
    """One run, relative to its seed's reference run."""

    record: dict
    target: float | None = None  # the reference's best accuracy for this seed
    steps: int | None = None  # first step reaching target (None: never)
    seconds: float | None = None  # training seconds to target
    ratio: float | None = None  # reference steps / steps
    time_ratio: float | None = None

    @property
    def variant(self) -> str:
        return self.record["variant"]

    @property
    def seed(self) -> int:
        return self.record["seed"]


@dataclass
class VariantSummary:
    variant: str
    rows: list[Row] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.rows)

    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.record["status"]] = out.get(r.record["status"], 0) + 1
        return out

    def values(self, attr: str) -> list:
        return [getattr(r, attr) for r in self.rows]

    def field(self, key: str) -> list:
        return [r.record.get(key) for r in self.rows]

    @property
    def reached(self) -> int:
        return sum(r.steps is not None for r in self.rows)


def mean_sd(xs: list) -> tuple[float, float] | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def geo_mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(statistics.fmean(math.log(x) for x in xs)) if xs else None


def summarize(records: list[dict], variants: list[str], reference: str | None,
              cells: list[dict]) -> dict[tuple, dict[str, VariantSummary]]:
    """{cell: {variant: VariantSummary}}: cells in the study's grid order, variants in its order."""
    keys = list(cells[0]) if cells else []
    out = {tuple(c[k] for k in keys): {v: VariantSummary(v) for v in variants} for c in cells or [{}]}
    for rec in records:
        by_variant = out.setdefault(cell_of(rec, keys), {v: VariantSummary(v) for v in variants})
        by_variant.setdefault(rec["variant"], VariantSummary(rec["variant"])).rows.append(Row(rec))
    for by_variant in out.values():
        if reference in by_variant:
            _pair_with_reference(by_variant, by_variant[reference])
    return out


def _pair_with_reference(by_variant: dict[str, VariantSummary], ref: VariantSummary) -> None:
    ref_by_seed = {r.seed: r.record for r in ref.rows if r.record["best_acc"] is not None}
    for summary in by_variant.values():
        for row in summary.rows:
            ref_rec = ref_by_seed.get(row.seed)
            if ref_rec is None:
                continue
            row.target = ref_rec["best_acc"]
            curve, ref_curve = row.record["curves"], ref_rec["curves"]
            row.steps = first_reaching(curve["step"], curve["acc"], row.target)
            row.seconds = first_reaching(curve["train_s"], curve["acc"], row.target)
            if row.steps is not None:
                ref_steps = first_reaching(ref_curve["step"], ref_curve["acc"], row.target)
                row.ratio = ref_steps / row.steps if row.steps else None
                ref_seconds = first_reaching(ref_curve["train_s"], ref_curve["acc"], row.target)
                row.time_ratio = ref_seconds / row.seconds if row.seconds and ref_seconds is not None else None


def contrast(a: VariantSummary, b: VariantSummary) -> tuple[list, list, int, int]:
    """Paired by seed: b's steps / a's steps to the common target (a speed-up of a over b),
    and a's best accuracy minus b's. Also how many seeds each of a and b reached the target."""
    b_by_seed = {r.seed: r for r in b.rows}
    ratios, diffs, a_reached, b_reached = [], [], 0, 0
    for r in a.rows:
        q = b_by_seed.get(r.seed)
        if q is None:
            continue
        a_reached += r.steps is not None
        b_reached += q.steps is not None
        if r.steps and q.steps:
            ratios.append(q.steps / r.steps)
        if r.record["best_acc"] is not None and q.record["best_acc"] is not None:
            diffs.append(r.record["best_acc"] - q.record["best_acc"])
    return ratios, diffs, a_reached, b_reached
