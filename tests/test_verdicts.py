"""Robust targets, censoring and verdicts with effect sizes and intervals, on crafted records.

Every rule of bnbench/report/claims.py gets crafted records where it must hold, must not hold,
must be inconclusive, and where fewer than 3 seeds make it indicative; and the cases a reviewer
found the old sign-voting rules getting wrong each get a test where the new rule must not pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bnbench.report import stats
from bnbench.report.claims import RULES, judge
from bnbench.report.summary import (
    FRACTIONS, Reach, end_acc, median_steps, paired_speedup, peak_acc, speedup_curve, summarize, threshold,
)
from bnbench.results import targets
from bnbench.results.targets import end_level, peak_level, reach, smoothed

EVERY = 100  # steps between evaluations in every crafted run


def run(variant, seed, acc, status="completed", num_classes=10, max_steps=None, probe=None):
    """A run record as `summarize` reads it: evaluations every 100 steps, 2 s of training each."""
    step = [EVERY * (i + 1) for i in range(len(acc))]
    max_steps = max_steps or (step[-1] if step else 1000)
    rec = {"variant": variant, "seed": seed, "status": status, "num_classes": num_classes,
           "best_acc": max(acc) if acc else None, "steps": step[-1] if step else 0, "max_steps": max_steps,
           "diverged_at": step[-1] if status == "diverged" and step else None,
           "config": {"run": {"eval_every": EVERY}},
           "curves": {"step": step, "acc": list(acc), "train_s": [2.0 * s for s in step]}}
    if probe is not None:
        rec["curves"]["probe"] = probe
    return rec


def ramp(k: int, level: float, n: int = 40, start: float = 0.1, noise: float = 0.0, seed: int = 0) -> list[float]:
    """Rises linearly from `start` to `level` over the first k evaluations, then stays there
    (plus deterministic noise of sd `noise`)."""
    rng = np.random.default_rng(1000 + seed)
    return [start + (level - start) * min(1.0, (i + 1) / k) + (float(rng.normal(0, noise)) if noise else 0.0)
            for i in range(n)]


def cell(records, variants=("base", "bn"), reference="base"):
    return summarize(records, list(variants), reference, [])[()]


def verdict_of(claim, records, variants=("base", "bn"), reference="base"):
    return judge(claim, cell(records, variants, reference), reference)


# --------------------------------------------------------------------------- robust statistics (targets.py)


def test_smoothed_is_centred_shrinks_at_the_start_and_stops_at_the_last_full_window():
    acc = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert smoothed(acc, 5) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert smoothed([0.1, None, 0.3], 3) == pytest.approx([0.1, 0.2])  # missing evaluations left out
    assert smoothed([0.5], 5) == [0.5] and smoothed([], 5) == []


def test_end_and_peak_levels_are_means_of_windows_not_single_evaluations():
    acc = [0.5] * 10 + [0.99] + [0.8] * 10  # one lucky evaluation on the way
    assert end_level(acc, 5) == pytest.approx(0.8)
    assert peak_level(acc, 5) == pytest.approx(max(np.convolve(acc, np.ones(5) / 5, "valid")))
    assert peak_level(acc, 5) < 0.9  # the spike alone does not make the peak


def test_reach_is_the_interval_between_two_evaluations():
    steps = [100, 200, 300, 400, 500, 600, 700]
    acc = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert reach(steps, acc, 0.35, 5) == (300, 400)  # smoothed 0.4 at step 400: after 300, by 400
    assert reach(steps, acc, 0.05, 5) == (0, 100)  # at the first evaluation: after step 0
    assert reach(steps, acc, 0.6, 5) is None  # the last full window's mean is 0.5


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 9, 40])
def test_a_run_always_reaches_its_own_end_level(n):
    rng = np.random.default_rng(n)
    acc = list(rng.uniform(0.5, 0.9, n))
    steps = [EVERY * (i + 1) for i in range(n)]
    assert reach(steps, acc, end_level(acc)) is not None
    assert peak_level(acc) >= end_level(acc)


def test_the_selection_series_is_chosen_in_one_place(monkeypatch):
    rec = run("base", 0, [0.5] * 10)
    rec["curves"]["val_acc"] = [0.7] * 10
    assert end_acc(rec) == pytest.approx(0.5)
    monkeypatch.setattr(targets, "SELECTION", "val_acc")
    assert end_acc(rec) == pytest.approx(0.7) and peak_acc(rec) == pytest.approx(0.7)
    bn = run("bn", 0, [0.5] * 10)
    bn["curves"]["val_acc"] = [0.8] * 10
    row = cell([rec, bn])["bn"].rows[0]
    assert row.target == pytest.approx(0.7) and row.reach.by == 100


# --------------------------------------------------------------------------- targets and censoring (summary.py)


def test_target_is_the_references_end_level_not_its_best_evaluation():
    ref = ramp(10, 0.88, n=40)
    ref[25] = 0.95  # one lucky evaluation late on the plateau: the old target
    records = [run("base", 0, ref), run("bn", 0, ramp(4, 0.90))]
    c = cell(records)
    assert c["bn"].rows[0].target == pytest.approx(0.88)
    assert c["bn"].rows[0].steps is not None  # reaches 0.88, never 0.95


def test_a_diverged_reference_sets_no_target_for_its_seed():
    records = [run("base", 0, [0.5, 0.6], status="diverged"), run("bn", 0, [0.8] * 5)]
    c = cell(records)
    assert c["bn"].rows[0].target is None and c["bn"].rows[0].reach is None
    assert judge({"rule": "faster", "variant": "bn"}, c, "base").verdict == "no data"


def test_censored_runs_are_counted_with_the_budget_never_dropped():
    records = [run("base", s, ramp(20, 0.88)) for s in range(3)]
    records += [run("bn", 0, ramp(5, 0.9)), run("bn", 1, ramp(5, 0.7), max_steps=4000),
                run("bn", 2, ramp(5, 0.7), max_steps=4000)]
    c = cell(records)
    reaches = [r.reach for r in c["bn"].rows]
    assert [r.censored for r in reaches] == [False, True, True]
    assert reaches[1] == Reach(4000, math.inf)  # more than its budget
    assert median_steps(reaches) == math.inf  # 2 of 3 never got there: "> budget"
    assert median_steps(reaches[:2] + [reaches[0]]) == reaches[0].by
    assert c["bn"].n == 3 and c["bn"].reached == 1


def test_a_failed_run_is_censored_where_it_stopped():
    records = [run("base", 0, ramp(20, 0.88)), run("bn", 0, ramp(5, 0.5, n=8), status="failed", max_steps=4000)]
    assert cell(records)["bn"].rows[0].reach == Reach(800, math.inf)


def test_speedup_uses_interval_midpoints_and_bounds_span_the_intervals():
    # the reference reaches its flat end level 0.88 by step 2,200 (after 2,100): ramp(20) + 2 evaluations
    # (a centred window of 5 must lie wholly on the plateau); bn gets there by 700 (after 600)
    records = [run("base", 0, ramp(20, 0.88)), run("bn", 0, ramp(5, 0.88))]
    sp = paired_speedup(cell(records)["bn"], cell(records)["base"])
    assert math.exp(sp.mids[0]) == pytest.approx(2150 / 650)
    assert math.exp(sp.lows[0]) == pytest.approx(2100 / 700) and math.exp(sp.highs[0]) == pytest.approx(2200 / 600)
    assert sp.interval.method == "range" and sp.interval.n == 1


def test_speedup_curve_covers_the_ladder_of_targets():
    records = [run("base", s, ramp(20, 0.88, noise=0.003, seed=s)) for s in range(3)]
    records += [run("bn", s, ramp(5, 0.9, noise=0.003, seed=s)) for s in range(3)]
    c = cell(records)
    curve = speedup_curve(c["bn"], c["base"])
    assert list(curve) == list(FRACTIONS)
    assert all(sp.interval.low > 1 for f, sp in curve.items() if f >= 0.9)
    row = c["bn"].rows[0]
    assert threshold(row.target, row.record, 1.0) == row.target
    assert threshold(row.target, row.record, 0.5) == pytest.approx(0.1 + 0.5 * (row.target - 0.1))


# --------------------------------------------------------------------------- stats.py


def test_bootstrap_is_scipys_bca_with_a_fixed_seed():
    values = [0.1, 0.25, 0.2, 0.4, 0.3]
    expected = scipy_stats.bootstrap((np.array(values),), np.mean, n_resamples=stats.N_RESAMPLES,
                                     method="BCa", rng=np.random.default_rng(stats.RANDOM_SEED)).confidence_interval
    assert stats.bootstrap_ci(values) == pytest.approx((expected.low, expected.high))
    assert stats.bootstrap_ci(values) == stats.bootstrap_ci(values)  # reproducible
    assert stats.bootstrap_ci([0.3, 0.3, 0.3]) == (0.3, 0.3)


def test_mean_interval_carries_bounds_and_infinities():
    iv = stats.mean_interval([1.0, 1.2, 0.9, -math.inf], [1.5, 1.4, 1.1, 0.2], [1.2, 1.3, 1.0, math.inf])
    assert iv.low == -math.inf and math.isfinite(iv.high) and iv.point is None
    short = stats.mean_interval([1.0, 2.0], [1.5, 2.5])
    assert (short.low, short.high, short.method, short.indicative) == (1.0, 2.5, "range", True)
    assert stats.mean_interval([]) is None


@pytest.mark.parametrize(
    "low,high,n,claimed,expected",
    [(0.1, 0.5, 5, "above", "holds"), (-0.5, -0.1, 5, "above", "does not hold"),
     (-0.1, 0.5, 5, "above", "inconclusive"),
     (0.0, 0.5, 5, "above", "inconclusive"),  # touching no effect is not "wholly on the claimed side"
     (-0.5, -0.1, 5, "below", "holds"), (0.1, 0.5, 2, "above", "indicative: holds"),
     (-0.5, -0.1, 1, "above", "indicative: does not hold"), (-0.1, 0.5, 2, "above", "inconclusive")],
)
def test_decide(low, high, n, claimed, expected):
    assert stats.decide(stats.Interval(None, low, high, n, "x"), 0.0, claimed) == expected
    assert stats.decide(None, 0.0) == "no data"


def test_proportion_interval_is_wilsons():
    iv = stats.proportion_interval(5, 5)
    assert iv.low == pytest.approx(5 / (5 + 1.959964 ** 2), rel=1e-4) and iv.high == 1.0
    assert stats.proportion_interval(2, 2).low == 1.0 and stats.proportion_interval(1, 2).low == 0.0


# --------------------------------------------------------------------------- the rules: faster


def faster_records(variant_ks: dict[int, int | None], ref_k: int = 20, noise: float = 0.002):
    """Reference seeds reach ~0.88 after ramping over 20 evaluations; the variant's ramp length
    per seed (None: it levels off at 0.70 and never gets there)."""
    records = [run("base", s, ramp(ref_k, 0.88, noise=noise, seed=s)) for s in variant_ks]
    for s, k in variant_ks.items():
        records.append(run("bn", s, ramp(k, 0.90, noise=noise, seed=s + 50) if k else ramp(5, 0.70, seed=s)))
    return records


FASTER = {"claim": "BN reaches the target in fewer steps", "rule": "faster", "variant": "bn"}


@pytest.mark.parametrize(
    "ks,expected",
    [
        ({0: 5, 1: 6, 2: 4, 3: 5, 4: 7}, "holds"),
        ({0: 30, 1: 32, 2: 28, 3: 35, 4: 30}, "does not hold"),  # slower in every seed
        ({0: 8, 1: 30, 2: 12, 3: 34, 4: 20}, "inconclusive"),  # faster in some seeds, slower in others
        ({0: 5, 1: 6, 2: 4, 3: 5, 4: None}, "inconclusive"),  # one seed never gets there: not dropped
        ({0: None, 1: None, 2: None}, "does not hold"),  # never, in every seed: bounds alone decide
        ({0: 5, 1: 6}, "indicative: holds"),
        ({0: 5}, "indicative: holds"),
        ({0: 30, 1: 35}, "indicative: does not hold"),
    ],
)
def test_faster(ks, expected):
    j = verdict_of(FASTER, faster_records(ks))
    assert j.verdict == expected
    assert j.n == len(ks)
    reached = sum(k is not None for k in ks.values())
    assert j.observed.startswith(f"reached the target in {reached}/{len(ks)} seeds")
    if None in ks.values():
        assert "never (> " in j.observed


def test_faster_does_not_drop_a_seed_that_never_reached_the_target():
    """The old geometric mean left such seeds out and reported the others' speed-up alone."""
    j = verdict_of(FASTER, faster_records({0: 5, 1: 6, 2: 4, 3: 5, 4: None}))
    assert j.effect.startswith("bounds only [0x to ")  # only an upper bound is known
    assert "s4 variant never (> 4,000)" in j.observed


def test_faster_at_3_6x_is_smaller_than_the_papers_14x():
    """'holds' is the direction (fewer steps); the size is compared with the paper's beside it."""
    j = verdict_of({**FASTER, "paper": 14}, faster_records({0: 5, 1: 6, 2: 4, 3: 5, 4: 7}))
    assert j.verdict == "holds" and j.paper == "smaller than the paper's 14x"
    j = verdict_of({**FASTER, "paper": 3.5}, faster_records({0: 5, 1: 6, 2: 4, 3: 5, 4: 7}))
    assert j.paper == "consistent with the paper's 3.5x"


def test_faster_is_not_decided_by_a_noisy_plateau():
    """Both runs level off at the same accuracy, with noise: which one first touches the
    reference's best evaluation is luck; against the end level, with intervals, it is a tie."""
    records = []
    for s in range(5):
        records += [run("base", s, ramp(10, 0.88, noise=0.004, seed=s)),
                    run("bn", s, ramp(10, 0.88, noise=0.004, seed=s + 20))]
    assert verdict_of(FASTER, records).verdict == "inconclusive"


def test_faster_against_a_claim_reference_races_to_the_same_target():
    records = [run("base", s, ramp(20, 0.88)) for s in range(3)]
    records += [run("mid", s, ramp(12, 0.89)) for s in range(3)] + [run("bn", s, ramp(4, 0.9)) for s in range(3)]
    c = cell(records, ("base", "mid", "bn"))
    assert judge({**FASTER, "reference": "mid"}, c, "base").verdict == "holds"
    assert judge({**FASTER, "variant": "base", "reference": "mid"}, c, "base").verdict == "does not hold"


def test_faster_when_both_reach_at_the_first_evaluation_is_inconclusive():
    records = [run("base", s, [0.9] * 10) for s in range(3)] + [run("bn", s, [0.9] * 10) for s in range(3)]
    j = verdict_of(FASTER, records)
    assert j.verdict == "inconclusive" and j.effect.endswith("(95% CI, n=3)")


def test_faster_has_no_target_when_the_reference_never_learned():
    """The MLP without BN at lr 16 stays at chance: every run "reaches" its end accuracy at the
    first evaluation, so a speed-up (1x, 27x...) would be noise; the rule says there is no data."""
    records = [run("base", s, ramp(3, 0.105, noise=0.002, seed=s)) for s in range(5)]
    records += [run("bn", s, ramp(4 + s, 0.89, seed=s)) for s in range(5)]
    j = verdict_of(FASTER, records)
    assert j.verdict == "no data" and j.observed.startswith("no target to race to")
    records[0] = run("base", 0, ramp(10, 0.5, seed=0))  # one seed learned: that seed alone has a race
    j = verdict_of(FASTER, records)
    assert j.verdict != "no data" and j.n == 1 and "1/1 seeds" in j.observed


def test_a_reference_at_chance_sets_no_target_for_the_tables_either():
    """The guard lives where targets are set (summary.target_of): no steps to target, no speed-up."""
    from bnbench.report.summary import paired_speedup, summarize

    records = [run("base", s, ramp(3, 0.105, noise=0.002, seed=s)) for s in range(3)]
    records += [run("bn", s, ramp(4 + s, 0.89, seed=s)) for s in range(3)]
    (cell,) = summarize(records, ["base", "bn"], "base", [{}]).values()
    assert all(r.target is None and r.reach is None for r in cell["bn"].rows)
    assert paired_speedup(cell["bn"], cell["base"]).interval is None


# --------------------------------------------------------------------------- higher_final, higher_best


def acc_records(ref_levels, bn_levels, noise=0.0005, bn_overshoot=0.0):
    """Flat plateaus after 5 evaluations; `bn_overshoot`: bn peaks that much higher mid-run and
    falls back to its level by the end."""
    records = []
    for s, (a, b) in enumerate(zip(ref_levels, bn_levels)):
        records.append(run("base", s, ramp(5, a, noise=noise, seed=s)))
        bn = ramp(5, b, noise=noise, seed=s + 10)
        for i in range(10, 20):
            bn[i] += bn_overshoot
        records.append(run("bn", s, bn))
    return records


@pytest.mark.parametrize("rule", ["higher_final", "higher_best"])
@pytest.mark.parametrize(
    "bn_levels,expected",
    [
        ([0.89, 0.895, 0.89, 0.892, 0.888], "holds"),
        ([0.87, 0.872, 0.868, 0.87, 0.875], "does not hold"),
        ([0.89, 0.87, 0.885, 0.872, 0.88], "inconclusive"),
        ([0.89, 0.895], "indicative: holds"),
        ([0.87], "indicative: does not hold"),
    ],
)
def test_accuracy_differences(rule, bn_levels, expected):
    ref_levels = [0.88] * len(bn_levels)
    j = verdict_of({"rule": rule, "variant": "bn"}, acc_records(ref_levels, bn_levels))
    assert j.verdict == expected and j.n == len(bn_levels)
    assert j.effect.endswith(f"n={len(bn_levels)})")


def test_ends_higher_is_judged_on_the_end_not_the_best():
    """BN peaks higher mid-run but ends below the baseline in every seed (the reviewer's lr 1.0
    case): higher_best holds, higher_final does not."""
    records = acc_records([0.89] * 5, [0.885, 0.884, 0.886, 0.883, 0.885], bn_overshoot=0.01)
    assert verdict_of({"rule": "higher_best", "variant": "bn"}, records).verdict == "holds"
    assert verdict_of({"rule": "higher_final", "variant": "bn"}, records).verdict == "does not hold"


def test_a_run_without_an_end_accuracy_is_named_and_left_out_not_counted_as_zero():
    records = acc_records([0.88] * 4, [0.89, 0.895, 0.89, 0.892])
    records.append(run("base", 4, ramp(5, 0.88)))
    records.append(run("bn", 4, [0.3, 0.2], status="diverged"))
    j = verdict_of({"rule": "higher_final", "variant": "bn"}, records)
    assert j.n == 4 and j.verdict == "holds" and "left out (no end accuracy): s4 diverged" in j.observed


def test_accuracy_difference_against_the_paper_in_points():
    records = acc_records([0.88] * 5, [0.89, 0.895, 0.89, 0.892, 0.888])  # about +1.1 pt
    assert verdict_of({"rule": "higher_best", "variant": "bn", "paper": 1.0}, records).paper == \
        "consistent with the paper's +1 pt"
    assert verdict_of({"rule": "higher_best", "variant": "bn", "paper": 0.5}, records).paper == \
        "larger than the paper's +0.5 pt"


# --------------------------------------------------------------------------- never_reaches


@pytest.mark.parametrize(
    "levels,expected",
    [
        ([0.80, 0.81, 0.79, 0.80, 0.82], "holds"),
        ([0.90, 0.91, 0.92, 0.90, 0.91], "does not hold"),
        ([0.885, 0.875, 0.884, 0.877, 0.881], "inconclusive"),
        ([0.80, 0.81], "indicative: holds"),
        ([0.91], "indicative: does not hold"),
    ],
)
def test_never_reaches(levels, expected):
    records = [run("base", s, ramp(5, 0.88)) for s in range(len(levels))]
    records += [run("bn", s, ramp(5, lv)) for s, lv in enumerate(levels)]
    j = verdict_of({"rule": "never_reaches", "variant": "bn"}, records)
    assert j.verdict == expected
    reached = sum(lv >= 0.88 for lv in levels)
    assert j.observed.startswith(f"reached the target in {reached}/{len(levels)} seeds")


# --------------------------------------------------------------------------- diverges


@pytest.mark.parametrize(
    "outcomes,expected",
    [
        ("DDDDD", "holds"),
        ("CCCCC", "does not hold"),
        ("DDDCC", "inconclusive"),
        ("DDDDC", "inconclusive"),  # Wilson's interval for 4/5 reaches below 1/2
        ("DD", "indicative: holds"),
        ("C", "indicative: does not hold"),
        ("DC", "inconclusive"),
    ],
)
def test_diverges(outcomes, expected):
    records = [run("x5", s, [0.3, 0.2] if o == "D" else [0.5] * 5, status="diverged" if o == "D" else "completed")
               for s, o in enumerate(outcomes)]
    j = verdict_of({"rule": "diverges", "variant": "x5"}, records, ("x5",), None)
    assert j.verdict == expected
    assert j.observed.startswith(f"{outcomes.count('D')}/{len(outcomes)} diverged")


def test_diverges_names_failed_runs_and_leaves_them_out():
    records = [run("x5", s, [0.3], status="diverged") for s in range(3)] + [run("x5", 3, [], status="failed")]
    j = verdict_of({"rule": "diverges", "variant": "x5"}, records, ("x5",), None)
    assert j.n == 3 and "left out (no outcome): s3 failed" in j.observed


# --------------------------------------------------------------------------- no_learning, learns


def peak_records(peaks, num_classes=10):
    return [run("sig", s, ramp(3, p, n=10, start=p)) for s, p in enumerate(peaks)]


@pytest.mark.parametrize(
    "peaks,claim,expected",
    [
        ([0.1] * 5, {}, "holds"),
        ([0.8, 0.85, 0.82, 0.8, 0.83], {}, "does not hold"),
        ([0.11, 0.19, 0.12, 0.18, 0.15], {}, "inconclusive"),
        ([0.1, 0.1], {}, "indicative: holds"),
        ([0.5], {}, "indicative: does not hold"),
        ([0.16, 0.17, 0.16], {"margin": 0.1}, "holds"),
    ],
)
def test_no_learning(peaks, claim, expected):
    j = verdict_of({"rule": "no_learning", "variant": "sig", **claim}, peak_records(peaks), ("sig",), None)
    assert j.verdict == expected


def test_no_learning_does_not_count_a_run_without_evaluations_as_accuracy_zero():
    records = peak_records([0.1, 0.1, 0.1]) + [run("sig", 3, [], status="failed")]
    j = verdict_of({"rule": "no_learning", "variant": "sig"}, records, ("sig",), None)
    assert j.n == 3 and "left out (no evaluation): s3 failed" in j.observed


@pytest.mark.parametrize(
    "peaks,claim,expected",
    [
        ([0.88, 0.89, 0.87, 0.88, 0.9], {"min_acc": 0.85}, "holds"),
        ([0.15, 0.16, 0.14, 0.15, 0.15], {"min_acc": 0.85}, "does not hold"),  # far above chance, far below the claim
        ([0.86, 0.84, 0.855, 0.845, 0.85], {"min_acc": 0.85}, "inconclusive"),
        ([0.88, 0.89], {"min_acc": 0.85}, "indicative: holds"),
        ([0.15], {"min_acc": 0.85}, "indicative: does not hold"),
        ([0.3, 0.31, 0.29], {}, "holds"),  # without min_acc: above chance + margin
        ([0.1, 0.11, 0.1], {}, "does not hold"),
    ],
)
def test_learns(peaks, claim, expected):
    j = verdict_of({"rule": "learns", "variant": "sig", **claim}, peak_records(peaks), ("sig",), None)
    assert j.verdict == expected


# --------------------------------------------------------------------------- steadier_inputs


def probe(final_median_shift: float, units: int = 3) -> list:
    """Two probes of (15th, 50th, 85th percentiles) x units; initial spread 2."""
    first = [[-1.0] * units, [0.0] * units, [1.0] * units]
    return [first, [[v + final_median_shift for v in row] for row in first]]


@pytest.mark.parametrize(
    "ratios,expected",
    [
        ([4.0, 5.0, 6.0, 4.5, 5.0], "holds"),
        ([1.0, 1.2, 0.9, 1.1, 1.0], "does not hold"),
        ([1.5, 2.6, 1.7, 2.5, 2.0], "inconclusive"),
        ([4.0, 5.0], "indicative: holds"),
        ([1.0], "indicative: does not hold"),
    ],
)
def test_steadier_inputs(ratios, expected):
    records = []
    for s, ratio in enumerate(ratios):
        records += [run("base", s, [0.5] * 5, probe=probe(ratio)), run("bn", s, [0.5] * 5, probe=probe(1.0))]
    j = verdict_of({"rule": "steadier_inputs", "variant": "bn"}, records)
    assert j.verdict == expected
    assert f"s0: {ratios[0] / 2:.2f} without vs 0.50 with" in j.observed


# --------------------------------------------------------------------------- every rule


@pytest.mark.parametrize("rule", sorted(RULES))
def test_no_runs_is_no_data(rule):
    c = cell([], ("base", "bn"))
    j = judge({"rule": rule, "variant": "bn"}, c, "base")
    assert (j.observed, j.verdict, j.n) == ("no runs", "no data", 0)


def test_unknown_rule():
    j = judge({"rule": "fastest", "variant": "bn"}, cell([run("bn", 0, [0.9])]), "base")
    assert j.verdict == "no data" and "unknown rule 'fastest'" in j.observed


def test_every_rule_is_tested_here():
    tested = {"faster", "higher_final", "higher_best", "never_reaches", "diverges", "no_learning", "learns",
              "steadier_inputs"}
    assert set(RULES) == tested


def test_study_claims_use_known_rules_and_parameters():
    """The shipped studies' claims name rules that exist, with parameters the rules read."""
    import yaml

    from bnbench.resources import ABLATIONS

    known = {"claim", "rule", "variant", "reference", "paper", "margin", "min_acc", "factor", "measure"}
    for path in sorted(ABLATIONS.glob("*.yaml")):
        for c in yaml.safe_load(path.read_text()).get("claims") or []:
            assert c["rule"] in RULES, (path.name, c)
            assert set(c) <= known, (path.name, c)


# --------------------------------------------------------------------------- the report's tables


def test_report_tables_show_interval_verdict_and_speedup_curve():
    from bnbench.report.build import _claims_section, _speedup_section, _target_text

    records = faster_records({0: 5, 1: 6, 2: 4, 3: 5, 4: None})
    c = cell(records)
    text = "\n".join(_claims_section([{**FASTER, "paper": 14}], c, "base"))
    assert "| BN reaches the target in fewer steps | `faster` |" in text and "**inconclusive**" in text
    assert "effect [95% interval]" in text and "paper's 14x" in text
    table = "\n".join(_speedup_section(c, "base"))
    assert "| `bn` |" in table and "100% (" in table and "50% (" in table
    caption = _target_text("base", c["base"])
    assert "last 5 evaluations" in caption and "every 100 steps" in caption
