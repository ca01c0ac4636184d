"""Steps-to-target and per-seed pairing with the reference, on crafted curves. The claim rules' verdicts,
robust targets and censoring: tests/test_verdicts.py."""

from __future__ import annotations

import pytest

from bnbench.report.claims import judge
from bnbench.report.summary import mean_sd, summarize
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


def test_reference_end_level_per_seed_is_the_target_and_ratios_pair_by_seed():
    records = [
        # seed 0: the reference ends at 0.80 (its last 5 evaluations); its smoothed curve (centred
        # mean of 5) first gets there at step 600 (0.3, 0.5, 0.62, 0.72, 0.78, 0.80)
        record("base", 0, [0.3, 0.5, 0.7] + [0.80] * 5),
        # seed 1: ends at 0.90; smoothed 0.4, 0.7, 0.78, 0.88, 0.9: by step 500
        record("base", 1, [0.4, 0.8] + [0.90] * 6),
        # bn seed 0 is at 0.85 from its first evaluation: by step 100 (after step 0)
        record("bn", 0, [0.85] * 8),
        # bn seed 1: smoothed 0.5, 0.8, 0.86, 0.95: by step 400 (after 300)
        record("bn", 1, [0.5] + [0.95] * 5, train_s=[50.0 * i for i in range(1, 7)]),
        # slow seed 1 levels off at 0.89 and never reaches 0.90 in its 800 steps
        record("slow", 1, [0.5, 0.6] + [0.89] * 6),
    ]
    out = summarize(records, ["base", "bn", "slow"], "base", [])
    assert list(out) == [()]
    cell = out[()]
    assert list(cell) == ["base", "bn", "slow"]
    base, bn, slow = cell["base"], cell["bn"], cell["slow"]

    assert [r.target for r in base.rows] == pytest.approx([0.80, 0.90])
    assert [r.steps for r in base.rows] == [600, 500]  # the reference reaches its own end level
    assert [(r.reach.after, r.reach.by) for r in base.rows] == [(500, 600), (400, 500)]
    assert [r.ratio for r in base.rows] == [1.0, 1.0]

    assert [r.target for r in bn.rows] == pytest.approx([0.80, 0.90])
    assert [r.steps for r in bn.rows] == [100, 400]
    assert [r.ratio for r in bn.rows] == pytest.approx([550 / 50, 450 / 350])  # interval midpoints
    assert [r.seconds for r in bn.rows] == [200.0, 200.0]
    assert [r.time_ratio for r in bn.rows] == pytest.approx([1200.0 / 200.0, 1000.0 / 200.0])

    (row,) = slow.rows
    assert row.target == pytest.approx(0.90) and row.steps is None and row.seconds is None and row.ratio is None
    assert row.reach.censored and row.reach.after == 800  # censored at its budget
    assert slow.n == 1 and slow.reached == 0  # censored: counted, not dropped
    assert bn.reached == 2


def test_seed_without_reference_is_left_unpaired():
    records = [record("base", 0, [0.5, 0.7, 0.7]), record("bn", 0, [0.8]), record("bn", 5, [0.9])]
    bn = summarize(records, ["base", "bn"], "base", [])[()]["bn"]
    assert [(r.seed, r.target, r.steps) for r in bn.rows] == [(0, pytest.approx(0.7 * 2 / 3 + 0.5 / 3), 100),
                                                               (5, None, None)]


def test_reference_without_evaluations_is_no_target():
    records = [record("base", 0, [], best_acc=None), record("bn", 0, [0.8])]
    bn = summarize(records, ["base", "bn"], "base", [])[()]["bn"]
    assert bn.rows[0].target is None and bn.rows[0].steps is None and bn.rows[0].reach is None


def test_no_reference_leaves_rows_unpaired():
    records = [record("base", 0, [0.5]), record("bn", 0, [0.8])]
    out = summarize(records, ["base", "bn"], None, [])
    assert all(r.target is None for s in out[()].values() for r in s.rows)


def test_grid_cells_are_separated():
    lr = lambda v: {"optim": {"lr": v}}  # noqa: E731
    records = [
        record("base", 0, [0.5, 0.9, 0.9], config=lr(0.1)),
        record("bn", 0, [0.95, 0.96, 0.96], config=lr(0.1)),
        record("base", 0, [0.3, 0.5, 0.4], config=lr(1.0)),
        record("bn", 0, [0.2, 0.3, 0.55], config=lr(1.0)),
    ]
    cells = [{"optim.lr": 0.1}, {"optim.lr": 1.0}]
    out = summarize(records, ["base", "bn"], "base", cells)
    assert list(out) == [(0.1,), (1.0,)]
    small, large = out[(0.1,)], out[(1.0,)]
    assert [r.record["config"]["optim"]["lr"] for s in small.values() for r in s.rows] == [0.1, 0.1]
    # 3 evaluations: the window is all three; the smoothed curve is (first, mean of all three)
    assert small["bn"].rows[0].target == pytest.approx(2.3 / 3) and small["bn"].rows[0].steps == 100
    assert small["bn"].rows[0].ratio == pytest.approx(150 / 50)
    assert large["bn"].rows[0].target == pytest.approx(0.4) and large["bn"].rows[0].steps is None


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


def test_mean_sd():
    assert mean_sd([1.0, 3.0, None, float("inf")]) == pytest.approx((2.0, 2 ** 0.5))
    assert mean_sd([5.0]) == (5.0, 0.0)
    assert mean_sd([None]) is None


# The claim rules: tests/test_verdicts.py (each rule where it must hold, must not hold, must be
# inconclusive, and indicative with fewer than 3 seeds).


def test_rules_needing_reference_without_reference_runs():
    cell = summarize([record("bn", 0, [0.9])], ["base", "bn"], "base", [])[()]
    for rule in ["faster", "never_reaches", "higher_best", "higher_final", "steadier_inputs"]:
        j = judge({"rule": rule, "variant": "bn"}, cell, "base")
        assert (j.observed, j.verdict) == ("no runs", "no data")


def test_last_quarter_gain_tells_a_plateau_from_a_run_still_climbing():
    from bnbench.report.summary import last_quarter_gain

    steps = [1000 * (i + 1) for i in range(40)]
    plateau = [0.9] * 40
    climbing = [0.8 + 0.0025 * i for i in range(40)]  # +0.25 points per evaluation, to the end
    assert last_quarter_gain(record("a", 0, plateau, step=steps)) == pytest.approx(0.0)
    # end level (mean of evaluations 35..39) less the end level at step 30,000 (evaluations 25..29)
    assert last_quarter_gain(record("a", 0, climbing, step=steps)) == pytest.approx(10 * 0.0025)
    assert last_quarter_gain(record("a", 0, climbing, step=steps, status="diverged")) is None
    assert last_quarter_gain(record("a", 0, climbing[:8], step=steps[:8])) is None  # too few evaluations
