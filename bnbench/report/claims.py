"""Verdicts on the paper's claims, each by a stated rule over the runs of one grid cell.

A study lists its claims:

    claims:
      - claim: "BN reaches the baseline's end accuracy in fewer steps (Fig. 1a)"
        rule: faster
        variant: bn
        paper: 14        # optional: the paper's size of the effect, in the rule's unit

Every rule reduces a claim to one number per seed (paired with the claim's reference run of the
same seed where the rule compares two variants), then to its mean over seeds with a 95%
interval (bnbench/report/stats.py: scipy's bootstrap over seeds; the range over seeds with fewer
than 3). The verdict reads the interval against the claim's boundary (no effect, unless the rule
says otherwise):

* holds: the interval lies wholly on the claimed side;
* does not hold: wholly on the other side;
* inconclusive: it straddles (or touches) the boundary;
* indicative: holds / indicative: does not hold: the same with fewer than 3 seeds;
* no data: no seed to judge (no runs, no reference run, no target, no evaluation).

The size is reported beside the verdict, and, where the claim gives `paper:`, compared with the
paper's (smaller than, consistent with, larger than: the paper's value below, inside, above the
interval). The paper's accuracies are ImageNet's: differences in points compare scale only.

Accuracies are the runs' robust statistics of the series used for selection
(bnbench/results/targets.py): a run's *end* accuracy is the mean of its last 5 evaluations (only
a completed run has one), its *peak* the highest mean of 5 consecutive evaluations. Runs without
the statistic a rule needs are named in "observed" and left out; a missing evaluation never
counts as accuracy 0. The target is the study reference's end accuracy, per seed
(bnbench/report/summary.py, which also says how runs that never reach it are censored).

The rules (unit of `paper:` in brackets):

* faster [x]: the variant reaches the target in fewer steps than the claim's reference (by
  default the study's): per seed, log(reference steps / variant steps), each run's steps the
  interval between two evaluations, a run that never got there censored (its steps > its
  budget). Claimed: speed-up > 1. A seed whose reference ends within 5 points of chance has no
  target (summary.target_of: every run would reach it at once): no data when no seed has one.
* higher_final [points]: the variant's end accuracy exceeds the reference's. Claimed: > 0.
* higher_best [points]: the variant's peak accuracy exceeds the reference's (the paper's
  results table's "max accuracy"). Claimed: > 0.
* never_reaches [points]: the variant's peak stays below the target (so its smoothed curve never
  reaches it): peak minus target, per seed. Claimed: < 0.
* diverges: runs of the variant end as `diverged` (non-finite or exploding loss): the fraction
  of its runs (completed or diverged; failed runs are named and left out), Wilson's 95%
  interval. Claimed: > 1/2 (most runs diverge).
* no_learning: the variant's peak stays within `margin` (default 0.05) of chance (1 / classes):
  peak minus chance, per run. Claimed: < margin.
* learns [accuracy]: the variant's peak exceeds `min_acc` (default: chance + `margin`): peak
  minus that, per run. Claimed: > 0.
* steadier_inputs: without normalization (the reference) the sigmoid inputs' median moves at
  least `factor` (default 2) times as far as with it, in units of the initial spread (median
  over units; bnbench.report.drift; `measure: shift` (default) or `path`): per seed,
  log(reference's / variant's). Claimed: ratio > factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from bnbench.report.drift import drift_summary
from bnbench.report.stats import (
    NO_DATA, Interval, compare_size, decide, mean_interval, proportion_interval,
)
from bnbench.report.summary import CHANCE_MARGIN, VariantSummary, chance, end_acc, paired_speedup, peak_acc, target_of


@dataclass(frozen=True)
class Judgement:
    """One claim in one grid cell: what was seen, the effect with its interval, the paper's
    size beside it, and the verdict."""

    observed: str
    effect: str
    paper: str
    verdict: str
    n: int  # seeds (or runs) judged
    interval: Interval | None = None  # the effect over seeds, in the rule's unit (UNITS)


def no_data(why: str, claim: dict | None = None) -> Judgement:
    paper = "–" if not claim or claim.get("paper") is None else f"paper {claim['paper']:g}; no data"
    return Judgement(why, "n/a", paper, NO_DATA, 0)


# --------------------------------------------------------------------------- formatting


def fmt_x(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:.2f}x" if x else "0x"


def fmt_pt(x: float) -> str:
    """An accuracy difference (a fraction) in points."""
    return ("+∞" if x > 0 else "-∞") if math.isinf(x) else f"{x * 100:+.2f} pt"


def _paper_x(x: float) -> str:
    return f"{x:g}x"


def _paper_pt(x: float) -> str:
    return f"{x * 100:+.3g} pt"


def fmt_acc(x: float) -> str:
    return f"{x * 100:.2f}%"


def fmt_fraction(x: float) -> str:
    return f"{x:.0%}"


def effect_text(iv: Interval | None, fmt: Callable[[float], str], what: str = "") -> str:
    """'point [low to high] (95% CI, n=seeds)'; a censored estimate has bounds only."""
    if iv is None:
        return "n/a"
    point = fmt(iv.point) if iv.point is not None else "bounds only"
    return f"{what}{point} [{fmt(iv.low)} to {fmt(iv.high)}] ({iv.method}, n={iv.n})"


def _per_seed(values: list[tuple[int, str]]) -> str:
    return ", ".join(f"s{seed} {text}" for seed, text in values)


def _paired(variant: VariantSummary, reference: VariantSummary):
    ref = {r.seed: r for r in reference.rows}
    return [(r, ref[r.seed]) for r in variant.rows if r.seed in ref]


def _without(missing: list[str], what: str) -> str:
    return f"; left out (no {what}): {', '.join(missing)}" if missing else ""


def _why(record: dict) -> str:
    return f"s{record['seed']} {record['status']}"


# --------------------------------------------------------------------------- rules


def faster(v: VariantSummary, ref: VariantSummary, claim: dict) -> Judgement:
    """Both runs of a seed race to the same target (the study reference's end accuracy)."""
    sp = paired_speedup(v, ref, 1.0)
    at_chance = [lv for q in ref.rows if (lv := end_acc(q.record)) is not None and target_of(q.record) is None]
    if not sp.seeds and at_chance:
        # e.g. the network without BN at a rate where it does not learn (summary.target_of)
        c = chance(ref.rows[0].record)
        return no_data(f"no target to race to: the reference's end accuracy is within {CHANCE_MARGIN * 100:g} points "
                       f"of chance ({fmt_acc(c)}) in every seed with one ({', '.join(map(fmt_acc, at_chance))})", claim)
    n = len(sp.seeds)
    if not n:
        return no_data("no seed with a target and both runs", claim)
    budget = {r.seed: r.reach.after for r in v.rows if r.reach is not None and r.reach.censored}
    per_seed = []
    for seed, mid in zip(sp.seeds, sp.mids):
        if math.isfinite(mid):
            per_seed.append((seed, fmt_x(math.exp(mid))))
        else:
            never = [f"variant never (> {budget[seed]:,.0f})"] if seed in sp.censored else []
            never += ["reference never"] if seed in sp.ref_censored else []
            per_seed.append((seed, " and ".join(never)))
    text = f"reached the target in {n - len(sp.censored)}/{n} seeds"
    if sp.ref_censored:
        text += f" (the reference in {n - len(sp.ref_censored)}/{n})"
    text += "; speed-up per seed " + _per_seed(per_seed)
    return Judgement(text, effect_text(sp.interval, fmt_x), compare_size(sp.interval, claim.get("paper"), _paper_x),
                     decide(sp.interval, 1.0, "above"), n, sp.interval)


def _accuracy_difference(v: VariantSummary, ref: VariantSummary, claim: dict, of: Callable, what: str) -> Judgement:
    diffs, per_seed, missing = [], [], []
    for r, q in _paired(v, ref):
        a, b = of(r.record), of(q.record)
        if a is None or b is None:
            missing += [_why(x) for x, acc in ((r.record, a), (q.record, b)) if acc is None]
            continue
        diffs.append(a - b)
        per_seed.append((r.seed, fmt_pt(a - b)))
    text = (f"validation {what}-accuracy difference per seed " + (_per_seed(per_seed) or "n/a")
            + _without(missing, f"{what} accuracy"))
    iv = mean_interval(diffs)
    if iv is None:
        return no_data(text, claim)
    return Judgement(text, effect_text(iv, fmt_pt), compare_size(iv, _pt(claim.get("paper")), _paper_pt),
                     decide(iv, 0.0, "above"), iv.n, iv)


def _pt(points: float | None) -> float | None:
    """A claim's `paper:` in points -> a fraction."""
    return None if points is None else points / 100


def higher_final(v: VariantSummary, ref: VariantSummary, claim: dict) -> Judgement:
    return _accuracy_difference(v, ref, claim, end_acc, "end")


def higher_best(v: VariantSummary, ref: VariantSummary, claim: dict) -> Judgement:
    return _accuracy_difference(v, ref, claim, peak_acc, "peak")


def never_reaches(v: VariantSummary, ref: VariantSummary, claim: dict) -> Judgement:
    gaps, per_seed, missing = [], [], []
    for r, _ in _paired(v, ref):
        peak = peak_acc(r.record)
        if r.target is None or peak is None:
            missing.append(_why(r.record) + (" (no target)" if r.target is None else ""))
            continue
        gaps.append(peak - r.target)
        per_seed.append((r.seed, fmt_pt(peak - r.target) + ("" if r.steps is None else f" (reached by {r.steps:,})")))
    reached = sum(g >= 0 for g in gaps)
    text = (f"reached the target in {reached}/{len(gaps)} seeds; peak minus target per seed "
            + (_per_seed(per_seed) or "n/a") + _without(missing, "peak or target"))
    iv = mean_interval(gaps)
    if iv is None:
        return no_data(text, claim)
    return Judgement(text, effect_text(iv, fmt_pt), compare_size(iv, _pt(claim.get("paper")), _paper_pt),
                     decide(iv, 0.0, "below"), iv.n, iv)


def diverges(v: VariantSummary, ref: VariantSummary | None, claim: dict) -> Judgement:
    judged = [r.record for r in v.rows if r.record["status"] in ("completed", "diverged")]
    failed = [_why(r.record) for r in v.rows if r.record["status"] not in ("completed", "diverged")]
    k = sum(r["status"] == "diverged" for r in judged)
    text = ", ".join(f"s{r['seed']} completed" if r["status"] == "completed" else f"s{r['seed']} diverged"
                     + (f" at step {r['diverged_at']:,}" if r.get("diverged_at") is not None else "")
                     for r in judged) + _without(failed, "outcome")
    iv = proportion_interval(k, len(judged))
    if iv is None:
        return no_data(text or "no runs", claim)
    return Judgement(f"{k}/{len(judged)} diverged: {text}", effect_text(iv, fmt_fraction, "diverged in "),
                     "–", decide(iv, 0.5, "above"), iv.n, iv)


def _peaks_over(v: VariantSummary, floor_of: Callable[[dict], float], label: str):
    values, per_seed, missing = [], [], []
    for r in v.rows:
        peak = peak_acc(r.record)
        if peak is None:
            missing.append(_why(r.record))
            continue
        values.append(peak - floor_of(r.record))
        per_seed.append((r.seed, fmt_acc(peak)))
    text = f"peak accuracy per seed {_per_seed(per_seed) or 'n/a'} ({label})" + _without(missing, "evaluation")
    return values, text


def no_learning(v: VariantSummary, ref: VariantSummary | None, claim: dict) -> Judgement:
    margin = claim.get("margin", CHANCE_MARGIN)
    c = chance(v.rows[0].record)
    values, text = _peaks_over(v, chance, f"chance {fmt_acc(c)}, margin {margin * 100:g} pt")
    iv = mean_interval(values)
    if iv is None:
        return no_data(text, claim)
    return Judgement(text, effect_text(iv, fmt_pt, "above chance by "), "–", decide(iv, margin, "below"), iv.n, iv)


def learns(v: VariantSummary, ref: VariantSummary | None, claim: dict) -> Judgement:
    margin = claim.get("margin", CHANCE_MARGIN)
    min_acc = claim.get("min_acc")
    if min_acc is not None:
        floor, label = (lambda rec: min_acc), f"needed {fmt_acc(min_acc)}"
    else:
        floor, label = (lambda rec: chance(rec) + margin), f"needed chance + {margin * 100:g} pt"
    values, text = _peaks_over(v, floor, label)
    iv = mean_interval(values)
    if iv is None:
        return no_data(text, claim)
    paper = "–" if claim.get("paper") is None else f"paper {claim['paper']:g}% (ImageNet)"
    return Judgement(text, effect_text(iv, fmt_pt, "above the needed accuracy by "), paper,
                     decide(iv, 0.0, "above"), iv.n, iv)


def steadier_inputs(v: VariantSummary, ref: VariantSummary, claim: dict) -> Judgement:
    factor = claim.get("factor", 2.0)
    measure = claim.get("measure", "shift")
    logs, parts, missing = [], [], []
    for r, q in _paired(v, ref):
        with_norm = drift_summary(r.record["curves"].get("probe"))
        without = drift_summary(q.record["curves"].get("probe"))
        if with_norm is None or without is None or measure not in with_norm:
            missing.append(f"s{r.seed}")
            continue
        a, b = without[measure], with_norm[measure]
        logs.append(math.log(max(a, 1e-12) / max(b, 1e-12)))
        parts.append(f"s{r.seed}: {a:.2f} without vs {b:.2f} with")
    text = (f"median {measure} (initial spreads) " + ("; ".join(parts) or "n/a")
            + f" (needed: without >= {factor:g}x with)" + _without(missing, "probe"))
    iv = mean_interval(logs)
    if iv is None:
        return no_data(text, claim)
    iv = iv.map(math.exp)
    return Judgement(text, effect_text(iv, fmt_x, "without / with "), "–",
                     decide(iv, factor, "above"), iv.n, iv)


RULES: dict[str, Callable[..., Judgement]] = {
    "faster": faster,
    "higher_final": higher_final,
    "higher_best": higher_best,
    "never_reaches": never_reaches,
    "diverges": diverges,
    "no_learning": no_learning,
    "learns": learns,
    "steadier_inputs": steadier_inputs,
}
# The unit of each rule's interval (Judgement.interval), for machine-readable output (summary.json)
UNITS = {
    "faster": "speed-up, reference steps / variant steps (x)",
    "higher_final": "validation end-accuracy difference, variant minus reference (fraction; x100 for points)",
    "higher_best": "validation peak-accuracy difference, variant minus reference (fraction; x100 for points)",
    "never_reaches": "peak minus target (fraction; x100 for points)",
    "diverges": "proportion of runs that diverged",
    "no_learning": "peak minus chance (fraction; x100 for points)",
    "learns": "peak minus the needed accuracy (fraction; x100 for points)",
    "steadier_inputs": "drift without normalization / with it (x)",
}
NEEDS_REFERENCE = {"faster", "never_reaches", "higher_best", "higher_final", "steadier_inputs"}


def judge(claim: dict, by_variant: dict[str, VariantSummary], reference: str | None) -> Judgement:
    """The judgement of one claim in one grid cell."""
    rule = RULES.get(claim.get("rule"))
    if rule is None:
        return no_data(f"unknown rule {claim.get('rule')!r} (known: {', '.join(RULES)})")
    v = by_variant.get(claim.get("variant"))
    ref = by_variant.get(claim.get("reference", reference))
    if v is None or not v.rows or (claim["rule"] in NEEDS_REFERENCE and (ref is None or not ref.rows)):
        return no_data("no runs", claim)
    return rule(v, ref, claim)


def evaluate(claim: dict, by_variant: dict[str, VariantSummary], reference: str | None) -> tuple[str, str]:
    """(observed, verdict) for one claim in one grid cell."""
    j = judge(claim, by_variant, reference)
    return j.observed, j.verdict
