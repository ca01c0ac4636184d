"""Verdicts on the paper's claims, each by a stated rule over the runs of one grid cell.

A study lists its claims:

    claims:
      - claim: "BN reaches the baseline's best accuracy in fewer steps (Fig. 1a)"
        rule: faster
        variant: bn

Verdicts: "holds" (every seed agrees), "does not hold" (every seed disagrees), "mixed",
or "no data". The rules, with the figures they report:

* faster: the variant reaches the target (the study reference's best accuracy, same seed) in
  fewer steps than the claim's reference (by default the study reference itself).
* higher_best: the variant's best accuracy exceeds the reference's (same seed).
* never_reaches: the variant never reaches the reference's best accuracy (same seed).
* diverges: the run ends as `diverged` (non-finite or exploding loss).
* no_learning: best accuracy stays within `margin` (default 0.05) of chance (1 / classes).
* learns: best accuracy exceeds chance by more than `margin`.
* steadier_inputs: without normalization (the reference) the sigmoid inputs' median moves at
  least `factor` (default 2) times as far as with it, in units of the initial spread
  (median over units; bnbench.report.drift).
"""

from __future__ import annotations

from collections.abc import Callable

from bnbench.report.drift import drift_summary
from bnbench.report.summary import VariantSummary

CHANCE_MARGIN = 0.05


def verdict(agree: list[bool]) -> str:
    if not agree:
        return "no data"
    if all(agree):
        return "holds"
    if not any(agree):
        return "does not hold"
    return "mixed"


def _paired(variant: VariantSummary, reference: VariantSummary):
    ref = {r.seed: r for r in reference.rows}
    return [(r, ref[r.seed]) for r in variant.rows if r.seed in ref]


def faster(v: VariantSummary, ref: VariantSummary, claim: dict):
    """Both runs of a seed race to the same target (the study reference's best accuracy)."""
    pairs = _paired(v, ref)
    agree, ratios = [], []
    for r, q in pairs:
        if r.steps is None:
            agree.append(False)
        elif q.steps is None:  # the claim's reference never got there
            agree.append(True)
        else:
            ratios.append(q.steps / r.steps)
            agree.append(q.steps > r.steps)
    reached = sum(r.steps is not None for r, _ in pairs)
    text = f"reached the target in {reached}/{len(pairs)} seeds"
    if ratios:
        text += f"; speed-up {', '.join(f'{x:.2f}x' for x in sorted(ratios))}"
    return text, verdict(agree)


def never_reaches(v: VariantSummary, ref: VariantSummary, claim: dict):
    pairs = _paired(v, ref)
    steps = [r.steps for r, _ in pairs]
    text = ", ".join("never" if s is None else f"reached at step {s:,}" for s in steps)
    return text or "n/a", verdict([s is None for s in steps])


def higher_best(v: VariantSummary, ref: VariantSummary, claim: dict):
    pairs = [(r, q) for r, q in _paired(v, ref) if r.record["best_acc"] is not None and q.record["best_acc"] is not None]
    diffs = [r.record["best_acc"] - q.record["best_acc"] for r, q in pairs]
    text = "best-accuracy difference " + (", ".join(f"{d * 100:+.2f} pt" for d in diffs) or "n/a")
    return text, verdict([d > 0 for d in diffs])


def diverges(v: VariantSummary, ref: VariantSummary | None, claim: dict):
    steps = [r.record["diverged_at"] for r in v.rows]
    text = ", ".join(f"diverged at step {s}" if s is not None else r.record["status"] for s, r in zip(steps, v.rows))
    return text or "no runs", verdict([s is not None for s in steps])


def _best(v: VariantSummary) -> list:
    return [r.record["best_acc"] if r.record["best_acc"] is not None else 0.0 for r in v.rows]


def no_learning(v: VariantSummary, ref: VariantSummary | None, claim: dict):
    margin = claim.get("margin", CHANCE_MARGIN)
    chance = 1.0 / v.rows[0].record["num_classes"]
    best = _best(v)
    return f"best accuracy {', '.join(f'{b:.4f}' for b in best)} (chance {chance:g})", \
        verdict([b <= chance + margin for b in best])


def learns(v: VariantSummary, ref: VariantSummary | None, claim: dict):
    text, result = no_learning(v, ref, claim)
    inverse = {"holds": "does not hold", "does not hold": "holds"}
    return text, inverse.get(result, result)


def steadier_inputs(v: VariantSummary, ref: VariantSummary, claim: dict):
    factor = claim.get("factor", 2.0)
    agree, parts = [], []
    for r, q in _paired(v, ref):
        with_norm, without = drift_summary(r.record["curves"]["probe"]), drift_summary(q.record["curves"]["probe"])
        if with_norm is None or without is None:
            continue
        agree.append(without["shift"] >= factor * with_norm["shift"])
        parts.append(f"s{r.seed}: {without['shift']:.2f} without vs {with_norm['shift']:.2f} with")
    return "median shift (initial spreads) " + ("; ".join(parts) or "n/a"), verdict(agree)


RULES: dict[str, Callable] = {
    "faster": faster,
    "higher_best": higher_best,
    "never_reaches": never_reaches,
    "diverges": diverges,
    "no_learning": no_learning,
    "learns": learns,
    "steadier_inputs": steadier_inputs,
}
NEEDS_REFERENCE = {"faster", "never_reaches", "higher_best", "steadier_inputs"}


def evaluate(claim: dict, by_variant: dict[str, VariantSummary], reference: str | None):
    """(observed, verdict) for one claim in one grid cell."""
    rule = RULES.get(claim.get("rule"))
    if rule is None:
        return f"unknown rule {claim.get('rule')!r} (known: {', '.join(RULES)})", "no data"
    v = by_variant.get(claim.get("variant"))
    ref_name = claim.get("reference", reference)
    ref = by_variant.get(ref_name)
    if v is None or not v.rows or (claim["rule"] in NEEDS_REFERENCE and (ref is None or not ref.rows)):
        return "no runs", "no data"
    return rule(v, ref, claim)
