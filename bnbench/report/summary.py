"""Per-run rows and per-variant summaries, relative to the study's reference variant.

**Target.** The reference variant's run of the *same seed* (and grid cell) sets it: the mean of
its last `WINDOW` (5) evaluations, its end level (bnbench/results/targets.py), of the accuracy
series used for selection (`targets.SELECTION`). The paper's target was its baseline's best
accuracy (72.2%, Inception's maximum); a maximum over hundreds of noisy evaluations is mostly
noise (on a plateau it lands late, on a lucky draw), the end level is not. A reference run that
did not complete (diverged, failed) or has no evaluation sets no target: its seed has no data.
Nor does one that ends within `CHANCE_MARGIN` (5 points) of chance: every run "reaches" chance
at its first evaluation, so a race to it says nothing about speed (the MLP without BN at lr 16).

**Steps to target.** The first evaluation at which a run's smoothed curve (centred mean over
`WINDOW` evaluations, bnbench/results/targets.py) reaches the target, read as the interval it
is: the run got there after the evaluation before (`Reach.after`; step 0 before the first) and
by this one (`Reach.by`).
The evaluation interval is the config's `run.eval_every`. The reference always reaches its own
end level (its smoothed curve equals it `WINDOW // 2` evaluations before the end).

**Ladder of targets.** Besides the reference's end level, runs race to `FRACTIONS` of the way
from chance (1 / classes) to it: `chance + q (end level - chance)`, per seed. The speed-up at
each is the speed-up curve of the report.

**Censoring.** A run whose smoothed curve never reaches a target is censored: it would need more
steps than it ran, anywhere from its budget (`max_steps`; for a failed run, the steps it ran) to
never; a diverged run counts as never within its budget too. It is never dropped:

* its steps are the interval (budget, infinity); in a paired speed-up (reference steps / the
  variant's) a censored variant's side bounds the speed-up above only (it is at most
  reference-steps / budget, and may be 0), a censored reference's bounds it below only. The
  verdicts carry these bounds into their intervals (bnbench/report/stats.py), so a claim that
  the variant is faster cannot hold while a seed of it never got there, and a claim can fail
  on bounds alone;
* the median steps to target ranks censored runs after every run that got there (the
  Kaplan-Meier median whenever every censoring falls after every observed step, as it does for
  completed and diverged runs, censored at the budget): when half or more never got there, the
  median is "> budget".

Speed-ups and accuracy differences are paired by seed: reference steps / variant steps, variant
minus reference.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from bnbench.report.drift import drift_summary
from bnbench.report.stats import Interval, mean_interval
from bnbench.results.record import Record
from bnbench.results.targets import end_level, late_gain, peak_level, reach_index, selection_curve

FRACTIONS = (0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 1.0)  # of the way from chance to the reference's end level
CHANCE_MARGIN = 0.05  # accuracies within this of chance (1 / classes) count as "at chance"


def lookup(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# The functions of one record take a Record (bnbench/results/record.py) or its JSON object.
def cell_of(record: Record | Mapping, grid_keys: list[str]) -> tuple:
    return tuple(lookup(Record.of(record).config, k) for k in grid_keys)


def chance(record: Record | Mapping) -> float | None:
    k = Record.of(record).num_classes
    return 1.0 / k if k else None


def eval_interval(record: Record | Mapping) -> int | None:
    """The steps between evaluations (`run.eval_every` of the resolved config)."""
    return lookup(Record.of(record).config or {}, "run.eval_every")


def end_acc(record: Record | Mapping) -> float | None:
    """Where a run ended: the mean of its last evaluations. Only a completed run has one (a
    diverged run's last evaluations precede its blow-up; a failed run stopped short)."""
    record = Record.of(record)
    if record.status != "completed":
        return None
    return end_level(selection_curve(record)[1])


def target_of(record: Record | Mapping) -> float | None:
    """The target a reference run sets for its seed: its end level, unless it has none or it
    is within `CHANCE_MARGIN` of chance (then None: no race for that seed)."""
    level, c = end_acc(record), chance(record)
    if level is None or (c is not None and level <= c + CHANCE_MARGIN):
        return None
    return level


def last_quarter_gain(record: Record | Mapping) -> float | None:
    """A completed run's rise over its last quarter of steps (targets.late_gain): ~0 on a plateau."""
    if Record.of(record).status != "completed":
        return None
    return late_gain(*selection_curve(record))


def peak_acc(record: Record | Mapping) -> float | None:
    """A run's best accuracy: the highest mean of consecutive evaluations (also of a diverged
    run, before it diverged). None without an evaluation."""
    return peak_level(selection_curve(record)[1])


def budget(record: Record | Mapping) -> int:
    """Where a run that never reached a target is censored: its step budget, or, for a run that
    failed (stopped by an error, not by its method), the steps it ran."""
    record = Record.of(record)
    last = (selection_curve(record)[0] or [0])[-1]  # records always say; crafted ones may not
    if record.status == "failed":
        return record.steps or last
    return record.max_steps or record.steps or last


@dataclass(frozen=True)
class Reach:
    """When a run reached a target: after step `after` and by step `by` (two evaluations);
    `by` infinite: never within the run (censored at `after`, its budget)."""

    after: float
    by: float
    seconds: float | None = None  # training seconds at `by`

    @property
    def censored(self) -> bool:
        return math.isinf(self.by)

    @property
    def mid(self) -> float:
        return (self.after + self.by) / 2


def reach_of(record: Record | Mapping, target: float) -> Reach:
    record = Record.of(record)
    steps, accs = selection_curve(record)
    i = reach_index(accs, target)
    if i is None:
        return Reach(budget(record), math.inf)
    train_s = (record.curves.train_s if record.curves else None) or []
    return Reach(steps[i - 1] if i else 0, steps[i], train_s[i] if i < len(train_s) else None)


def threshold(target: float, record: Record | Mapping, fraction: float) -> float:
    """`fraction` of the way from chance to `target` (1: the target itself, exactly)."""
    if fraction == 1:
        return target
    c = chance(record) or 0.0
    return c + fraction * (target - c)


@dataclass
class Row:
    """One run, relative to its seed's reference run."""

    record: Record
    target: float | None = None  # the reference's end level for this seed
    reach: Reach | None = None  # reaching the target (None: no target for this seed)
    ratio: float | None = None  # reference steps / steps (interval midpoints), both reached
    time_ratio: float | None = None

    @property
    def variant(self) -> str:
        return self.record.variant

    @property
    def seed(self) -> int:
        return self.record.seed

    @property
    def steps(self) -> float | None:
        """The evaluation step by which it reached the target (None: never, or no target)."""
        return None if self.reach is None or self.reach.censored else self.reach.by

    @property
    def seconds(self) -> float | None:
        return None if self.reach is None or self.reach.censored else self.reach.seconds


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
            out[r.record.status] = out.get(r.record.status, 0) + 1
        return out

    def values(self, attr: str) -> list:
        return [getattr(r, attr) for r in self.rows]

    def field(self, key: str) -> list:
        """Each run's record value of `key` (None where a record lacks it)."""
        return [r.record.get(key) for r in self.rows]

    @property
    def reached(self) -> int:
        return sum(r.steps is not None for r in self.rows)


def mean_sd(xs: list) -> tuple[float, float] | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(records: list[Record | Mapping], variants: list[str], reference: str | None,
              cells: list[dict]) -> dict[tuple, dict[str, VariantSummary]]:
    """{cell: {variant: VariantSummary}}: cells in the study's grid order, variants in its order."""
    keys = list(cells[0]) if cells else []
    out = {tuple(c[k] for k in keys): {v: VariantSummary(v) for v in variants} for c in cells or [{}]}
    for rec in map(Record.of, records):
        by_variant = out.setdefault(cell_of(rec, keys), {v: VariantSummary(v) for v in variants})
        by_variant.setdefault(rec.variant, VariantSummary(rec.variant)).rows.append(Row(rec))
    for by_variant in out.values():
        if reference in by_variant:
            _pair_with_reference(by_variant, by_variant[reference])
    return out


def _pair_with_reference(by_variant: dict[str, VariantSummary], ref: VariantSummary) -> None:
    targets = {r.seed: (r.record, target_of(r.record)) for r in ref.rows}
    for summary in by_variant.values():
        for row in summary.rows:
            ref_rec, target = targets.get(row.seed, (None, None))
            if target is None:
                continue
            row.target = target
            row.reach = reach_of(row.record, target)
            ref_reach = reach_of(ref_rec, target)
            if not (row.reach.censored or ref_reach.censored):
                row.ratio = ref_reach.mid / row.reach.mid if row.reach.mid else None
                if row.reach.seconds and ref_reach.seconds is not None:
                    row.time_ratio = ref_reach.seconds / row.reach.seconds


# --------------------------------------------------------------------------- paired speed-ups


@dataclass
class Speedup:
    """Reference steps / variant steps to one target, paired by seed, on a log scale: each
    seed's log speed-up lies in [lows[i], highs[i]] (the two runs' step intervals and any
    censoring), estimated by mids[i] (interval midpoints); `interval` is over seeds, in x."""

    seeds: list[int] = field(default_factory=list)
    lows: list[float] = field(default_factory=list)
    highs: list[float] = field(default_factory=list)
    mids: list[float] = field(default_factory=list)
    censored: list[int] = field(default_factory=list)  # seeds whose variant run never got there
    ref_censored: list[int] = field(default_factory=list)  # ... whose reference run never did
    interval: Interval | None = None


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def paired_speedup(variant: VariantSummary, reference: VariantSummary, fraction: float = 1.0) -> Speedup:
    """The variant's speed-up over `reference` to `fraction` of the way to each seed's target
    (the study reference's end level, the same for both runs of a seed)."""
    ref_by_seed = {r.seed: r for r in reference.rows}
    out = Speedup()
    for row in variant.rows:
        q = ref_by_seed.get(row.seed)
        if q is None or row.target is None:
            continue
        t = threshold(row.target, row.record, fraction)
        v, r = reach_of(row.record, t), reach_of(q.record, t)
        out.seeds.append(row.seed)
        out.lows.append(_log(r.after) - _log(v.by) if not (math.isinf(r.after) or math.isinf(v.by)) else -math.inf)
        out.highs.append(math.inf if v.after == 0 or math.isinf(r.by) else _log(r.by) - _log(v.after))
        out.mids.append(math.log(r.mid / v.mid) if not (v.censored or r.censored) else math.nan)
        if v.censored:
            out.censored.append(row.seed)
        if r.censored:
            out.ref_censored.append(row.seed)
    points = [m if math.isfinite(m) else math.inf for m in out.mids]
    interval = mean_interval(out.lows, out.highs, points)
    out.interval = interval.map(math.exp) if interval else None
    return out


def speedup_curve(variant: VariantSummary, reference: VariantSummary,
                  fractions: tuple = FRACTIONS) -> dict[float, Speedup]:
    """{fraction: Speedup}: the speed-up against the target."""
    return {f: paired_speedup(variant, reference, f) for f in fractions}


def mean_threshold(summary: VariantSummary, fraction: float) -> float | None:
    """The target at `fraction`, averaged over the seeds' targets (to label a curve's x)."""
    ts = [threshold(r.target, r.record, fraction) for r in summary.rows if r.target is not None]
    return statistics.fmean(ts) if ts else None


def median_steps(reaches: list[Reach]) -> float | None:
    """The median of the steps by which runs reached a target, censored runs ranked after all
    that did (the Kaplan-Meier median when every censoring falls after every observed step);
    infinite when half or more never got there; None without runs."""
    if not reaches:
        return None
    xs = sorted(r.by for r in reaches)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# --------------------------------------------------------------------------- contrasts


@dataclass
class Contrast:
    """One pair of variants on the same seeds (a study's `contrasts`): the first's speed-up over
    the second to the reference's end accuracy (censored seeds as bounds) and the difference in
    end accuracy, first minus second (completed runs of both), each over seeds with its interval."""

    variant: str
    against: str
    speedup: Speedup
    end_diff: Interval | None


def contrast(first: VariantSummary, second: VariantSummary) -> Contrast:
    pairs = {r.seed: r.record for r in second.rows}
    diffs = [end_acc(r.record) - end_acc(pairs[r.seed]) for r in first.rows
             if r.seed in pairs and end_acc(r.record) is not None and end_acc(pairs[r.seed]) is not None]
    return Contrast(first.variant, second.variant, paired_speedup(first, second), mean_interval(diffs))


def drift_means(summary: VariantSummary) -> dict | None:
    """The sigmoid inputs' drift (bnbench/report/drift.py) averaged over a variant's runs with a
    probe: the median's shift and path, the spread's final/initial ratio (None without a probe)."""
    ds = [d for r in summary.rows if (d := drift_summary(r.record.curves.probe))]
    if not ds:
        return None
    path = [d["path"] for d in ds if "path" in d]
    return {"shift": sum(d["shift"] for d in ds) / len(ds), "path": sum(path) / len(path) if path else None,
            "spread_ratio": sum(d["spread_ratio"] for d in ds) / len(ds), "runs": len(ds)}
