"""Steps-to-target, per-seed pairing with the reference, and claim verdicts, on crafted curves."""

from __future__ import annotations

import pytest

from bnbench.report.claims import RULES, evaluate, verdict
from bnbench.report.summary import VariantSummary, geo_mean, mean_sd, summarize
from bnbench.results.targets import first_reaching, reach_table, target_key


def record(variant, seed, acc, step=None, train_s=None, status="completed", diverged_at=None,
           num_classes=10, config=None, best_acc="max"):
    """A run record as `summarize` reads it; steps 100, 200, ... and 2 s per step by default."""
    step = step or [100 * (i + 1) for i in range(len(acc))]
    train_s = train_s or [s * 2.0 for s in step]
    if best_acc == "max":
        best_acc = max(acc) if acc else None
    return {"variant": variant, "seed": seed, "best_acc": best_acc, "status": status, "diverged_at": diverged_at,
            "num_classes": num_classes, "config": config or {},
            "curves": {"step": step, "acc": acc, "train_s": train_s}}


# --------------------------------------------------------------------------- targets.py


@pytest.mark.parametrize(
    "accs,target,expected",
    [
        ([0.1, 0.9, 0.8, 0.95], 0.85, 100),  # the first reaching it, not a later one
        ([0.1, 0.9, 0.8, 0.95], 0.9, 100),  # >= counts
        ([0.1, 0.9, 0.8, 0.95], 0.95, 300),
        ([0.1, 0.9, 0.8, 0.95], 0.96, None),  # never
        ([None, 0.5, None, 0.7], 0.6, 300),  # missing evaluations skipped
        ([0.99, 0.1, 0.2, 0.3], 0.5, 0),
        ([], 0.5, None),
    ],
)
def test_first_reaching(accs, target, expected):
    xs = [0, 100, 200, 300][: len(accs)]
    assert first_reaching(xs, accs, target) == expected


def test_first_reaching_returns_x_not_index():
    assert first_reaching([1.5, 3.25, 7.0], [0.2, 0.6, 0.9], 0.5) == 3.25


@pytest.mark.parametrize("target,key", [(0.85, "0.85"), (0.1 + 0.2, "0.3"), (0.722, "0.722"), (1.0, "1"), (0.9999, "0.9999")])
def test_target_key(target, key):
    assert target_key(target) == key


def test_reach_table():
    table = reach_table([10, 20, 30], [0.5, 0.86, 0.91], [0.5, 0.85, 0.9, 0.95])
    assert table == {"0.5": 10, "0.85": 20, "0.9": 30, "0.95": None}


# --------------------------------------------------------------------------- summarize


def test_reference_best_per_seed_is_the_target_and_ratios_pair_by_seed():
    records = [
        # seed 0: reference best 0.80 first reached at step 400 (again at 500)
        record("base", 0, [0.3, 0.5, 0.7, 0.80, 0.80]),
        # seed 1: reference best 0.90 at step 300
        record("base", 1, [0.4, 0.6, 0.90, 0.85]),
        # bn seed 0 reaches 0.80 at step 200 (then more): 400 / 200 = 2
        record("bn", 0, [0.6, 0.81, 0.79, 0.95]),
        # bn seed 1 reaches 0.90 at step 100: 300 / 100 = 3 (it would reach seed 0's 0.80 at 100 too)
        record("bn", 1, [0.92, 0.93], train_s=[50.0, 100.0]),
        # slow seed 1 never reaches 0.90
        record("slow", 1, [0.5, 0.6, 0.89]),
    ]
    out = summarize(records, ["base", "bn", "slow"], "base", [])
    assert list(out) == [()]
    cell = out[()]
    assert list(cell) == ["base", "bn", "slow"]
    base, bn, slow = cell["base"], cell["bn"], cell["slow"]

    assert [r.target for r in base.rows] == [0.80, 0.90]
    assert [r.steps for r in base.rows] == [400, 300]  # the reference's own: step of its best
    assert [r.ratio for r in base.rows] == [1.0, 1.0]

    assert [r.target for r in bn.rows] == [0.80, 0.90]
    assert [r.steps for r in bn.rows] == [200, 100]
    assert [r.ratio for r in bn.rows] == pytest.approx([2.0, 3.0])
    assert [r.seconds for r in bn.rows] == [400.0, 50.0]
    assert [r.time_ratio for r in bn.rows] == pytest.approx([800.0 / 400.0, 600.0 / 50.0])

    (row,) = slow.rows
    assert row.target == 0.90 and row.steps is None and row.seconds is None and row.ratio is None
    assert slow.n == 1 and slow.reached == 0  # censored: counted, not dropped
    assert bn.reached == 2


def test_seed_without_reference_is_left_unpaired():
    records = [record("base", 0, [0.5, 0.7]), record("bn", 0, [0.8]), record("bn", 5, [0.9])]
    bn = summarize(records, ["base", "bn"], "base", [])[()]["bn"]
    assert [(r.seed, r.target, r.steps) for r in bn.rows] == [(0, 0.7, 100), (5, None, None)]
    assert bn.rows[0].ratio == pytest.approx(2.0)


def test_reference_without_best_acc_is_no_target():
    records = [record("base", 0, [], best_acc=None), record("bn", 0, [0.8])]
    bn = summarize(records, ["base", "bn"], "base", [])[()]["bn"]
    assert bn.rows[0].target is None and bn.rows[0].steps is None


def test_no_reference_leaves_rows_unpaired():
    records = [record("base", 0, [0.5]), record("bn", 0, [0.8])]
    out = summarize(records, ["base", "bn"], None, [])
    assert all(r.target is None for s in out[()].values() for r in s.rows)


def test_grid_cells_are_separated():
    lr = lambda v: {"optim": {"lr": v}}  # noqa: E731
    records = [
        record("base", 0, [0.5, 0.9], config=lr(0.1)),
        record("bn", 0, [0.95, 0.96], config=lr(0.1)),
        record("base", 0, [0.3, 0.5, 0.4], config=lr(1.0)),
        record("bn", 0, [0.2, 0.45, 0.55], config=lr(1.0)),
    ]
    cells = [{"optim.lr": 0.1}, {"optim.lr": 1.0}]
    out = summarize(records, ["base", "bn"], "base", cells)
    assert list(out) == [(0.1,), (1.0,)]
    small, large = out[(0.1,)], out[(1.0,)]
    assert [r.record["config"]["optim"]["lr"] for s in small.values() for r in s.rows] == [0.1, 0.1]
    assert small["bn"].rows[0].target == 0.9 and small["bn"].rows[0].steps == 100
    assert small["bn"].rows[0].ratio == pytest.approx(2.0)
    assert large["bn"].rows[0].target == 0.5 and large["bn"].rows[0].steps == 300
    assert large["bn"].rows[0].ratio == pytest.approx(200 / 300)


def test_cells_keep_grid_order_and_empty_variants():
    cells = [{"a": 2}, {"a": 1}]
    out = summarize([record("bn", 0, [0.5], config={"a": 1})], ["base", "bn"], "base", cells)
    assert list(out) == [(2,), (1,)]
    assert out[(2,)]["bn"].n == 0 and out[(1,)]["bn"].n == 1 and out[(1,)]["base"].n == 0


def test_unlisted_variant_and_statuses():
    records = [record("extra", 0, [0.5], status="diverged"), record("extra", 1, [0.5]),
               record("extra", 2, [0.5], status="diverged")]
    out = summarize(records, ["base"], "base", [])[()]
    assert list(out) == ["base", "extra"]
    assert out["extra"].statuses() == {"diverged": 2, "completed": 1}
    assert out["extra"].field("seed") == [0, 1, 2]


def test_mean_sd_and_geo_mean():
    assert mean_sd([1.0, 3.0, None, float("inf")]) == pytest.approx((2.0, 2 ** 0.5))
    assert mean_sd([5.0]) == (5.0, 0.0)
    assert mean_sd([None]) is None
    assert geo_mean([2.0, 8.0, None, 0.0]) == pytest.approx(4.0)
    assert geo_mean([None]) is None


# --------------------------------------------------------------------------- claims


@pytest.mark.parametrize(
    "agree,expected",
    [([], "no data"), ([True], "holds"), ([True, True], "holds"), ([False, False], "does not hold"),
     ([True, False, True], "mixed")],
)
def test_verdict(agree, expected):
    assert verdict(agree) == expected


def faster_cell(variant_curves: dict[int, list[float]]):
    """Reference seeds 0..2 reach their best (0.8) at step 300; the variant's curves per seed."""
    records = [record("base", s, [0.4, 0.6, 0.8]) for s in range(3)]
    records += [record("bn", s, acc) for s, acc in variant_curves.items()]
    return summarize(records, ["base", "bn"], "base", [])[()]


CLAIM_FASTER = {"claim": "BN is faster", "rule": "faster", "variant": "bn"}


@pytest.mark.parametrize(
    "curves,expected",
    [
        ({0: [0.8], 1: [0.5, 0.85], 2: [0.9]}, "holds"),  # 3x, 1.5x, 3x
        ({0: [0.1, 0.2, 0.3, 0.8], 1: [0.5, 0.5, 0.8], 2: [0.7]}, "does not hold"),  # slower, equal, never
        ({0: [0.8], 1: [0.1, 0.2, 0.3, 0.4, 0.9], 2: [0.9]}, "mixed"),
    ],
)
def test_faster(curves, expected):
    observed, result = evaluate(CLAIM_FASTER, faster_cell(curves), "base")
    assert result == expected
    reached = sum(any(a >= 0.8 for a in acc) for acc in curves.values())
    assert observed.startswith(f"reached the target in {reached}/3 seeds")


def test_faster_reports_sorted_ratios():
    observed, _ = evaluate(CLAIM_FASTER, faster_cell({0: [0.8], 1: [0.5, 0.85]}), "base")
    assert observed == "reached the target in 2/2 seeds; speed-up 1.50x, 3.00x"


@pytest.mark.parametrize(
    "bests,expected",
    [([0.9, 0.95], "holds"), ([0.5, 0.8], "does not hold"), ([0.9, 0.7], "mixed")],
)
def test_higher_best(bests, expected):
    records = [record("base", s, [0.8]) for s in range(2)] + [record("bn", s, [b]) for s, b in enumerate(bests)]
    cell = summarize(records, ["base", "bn"], "base", [])[()]
    observed, result = evaluate({"rule": "higher_best", "variant": "bn"}, cell, "base")
    assert result == expected
    assert observed.startswith("best-accuracy difference ")


@pytest.mark.parametrize(
    "diverged,expected",
    [([120, 40], "holds"), ([None, None], "does not hold"), ([None, 70], "mixed")],
)
def test_diverges(diverged, expected):
    records = [record("x30", s, [0.1], diverged_at=d, status="diverged" if d is not None else "completed")
               for s, d in enumerate(diverged)]
    cell = summarize(records, ["x30"], None, [])[()]
    observed, result = evaluate({"rule": "diverges", "variant": "x30"}, cell, None)
    assert result == expected
    for d in diverged:
        assert (f"diverged at step {d}" if d is not None else "completed") in observed


@pytest.mark.parametrize(
    "bests,num_classes,claim,expected",
    [
        ([0.11, 0.14, None], 10, {}, "holds"),  # within 0.05 of chance 0.1; no evaluation counts as 0
        ([0.5, 0.9], 10, {}, "does not hold"),
        ([0.12, 0.5], 10, {}, "mixed"),
        ([0.16], 10, {}, "does not hold"),  # 0.16 > 0.1 + 0.05
        ([0.16], 10, {"margin": 0.1}, "holds"),
        ([0.004], 1000, {}, "holds"),
        ([0.06], 1000, {}, "does not hold"),
    ],
)
def test_no_learning_and_learns(bests, num_classes, claim, expected):
    records = [record("sig", s, [b] if b is not None else [], best_acc=b, num_classes=num_classes)
               for s, b in enumerate(bests)]
    cell = summarize(records, ["sig"], None, [])[()]
    _, result = evaluate({"rule": "no_learning", "variant": "sig", **claim}, cell, None)
    assert result == expected
    _, inverse = evaluate({"rule": "learns", "variant": "sig", **claim}, cell, None)
    assert inverse == {"holds": "does not hold", "does not hold": "holds", "mixed": "mixed"}[expected]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_no_runs_is_no_data(rule):
    cell = {"base": VariantSummary("base"), "bn": VariantSummary("bn")}
    assert evaluate({"rule": rule, "variant": "bn"}, cell, "base") == ("no runs", "no data")


@pytest.mark.parametrize("rule", ["faster", "never_reaches", "higher_best", "steadier_inputs"])
def test_rules_needing_reference_without_reference_runs(rule):
    cell = summarize([record("bn", 0, [0.9])], ["base", "bn"], "base", [])[()]
    assert evaluate({"rule": rule, "variant": "bn"}, cell, "base") == ("no runs", "no data")


def test_unknown_variant_and_rule():
    cell = summarize([record("bn", 0, [0.9])], ["bn"], None, [])[()]
    assert evaluate({"rule": "diverges", "variant": "missing"}, cell, None) == ("no runs", "no data")
    observed, result = evaluate({"rule": "fastest", "variant": "bn"}, cell, None)
    assert result == "no data" and "unknown rule 'fastest'" in observed


def test_claim_reference_overrides_study_reference():
    records = [record("base", 0, [0.5, 0.9]), record("other", 0, [0.1, 0.2, 0.5]), record("bn", 0, [0.95])]
    cell = summarize(records, ["base", "other", "bn"], "base", [])[()]
    # Rows are paired with the study's reference; the claim's reference only changes which runs are compared.
    _, result = evaluate({"rule": "higher_best", "variant": "bn", "reference": "other"}, cell, "base")
    assert result == "holds"
    _, result = evaluate({"rule": "higher_best", "variant": "other", "reference": "base"}, cell, "base")
    assert result == "does not hold"


def probe(final_median_shift: float, units: int = 3) -> list:
    """Two evaluations of (15th, 50th, 85th percentiles) x units; initial spread 2."""
    first = [[-1.0] * units, [0.0] * units, [1.0] * units]
    last = [[v + final_median_shift for v in row] for row in first]
    return [first, last]


@pytest.mark.parametrize(
    "shifts,expected",
    [
        ({0: (4.0, 1.0), 1: (2.0, 1.0)}, "holds"),  # without moves 4x and exactly 2x as far
        ({0: (1.0, 1.0), 1: (0.5, 2.0)}, "does not hold"),
        ({0: (4.0, 1.0), 1: (1.0, 1.0)}, "mixed"),
    ],
)
def test_steadier_inputs(shifts, expected):
    records = []
    for seed, (without, with_norm) in shifts.items():
        base, bn = record("base", seed, [0.5]), record("bn", seed, [0.5])
        base["curves"]["probe"], bn["curves"]["probe"] = probe(without), probe(with_norm)
        records += [base, bn]
    cell = summarize(records, ["base", "bn"], "base", [])[()]
    observed, result = evaluate({"rule": "steadier_inputs", "variant": "bn"}, cell, "base")
    assert result == expected
    without, with_norm = shifts[0]
    assert f"s0: {without / 2:.2f} without vs {with_norm / 2:.2f} with" in observed


def test_faster_against_a_claim_reference_races_to_the_same_target():
    # study reference "base" peaks at 0.9 (step 200); "mid" gets there at 300, "bn" at 100
    records = [record("base", 0, [0.5, 0.9]), record("mid", 0, [0.5, 0.6, 0.9]), record("bn", 0, [0.9])]
    cell = summarize(records, ["base", "mid", "bn"], "base", [])[()]
    observed, result = evaluate({"rule": "faster", "variant": "bn", "reference": "mid"}, cell, "base")
    assert result == "holds" and "3.00x" in observed
    _, result = evaluate({"rule": "faster", "variant": "mid", "reference": "base"}, cell, "base")
    assert result == "does not hold"


def test_never_reaches():
    records = [record("base", s, [0.5, 0.9]) for s in (0, 1)] + [
        record("sig", 0, [0.3, 0.6]), record("sig", 1, [0.3, 0.95])]
    cell = summarize(records, ["base", "sig"], "base", [])[()]
    observed, result = evaluate({"rule": "never_reaches", "variant": "sig"}, cell, "base")
    assert result == "mixed" and "never" in observed and "reached at step 200" in observed
