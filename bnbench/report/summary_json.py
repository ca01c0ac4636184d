"""summary.json: the report's figures, machine-readable.

Per grid cell and variant: runs, statuses, best / final / end validation accuracy and test
accuracy at the best step and at the end (mean, sd, per seed), steps to the target, the
speed-up with its interval and against each target fraction, the sigmoid-input drift; each
contrast's speed-up and end-accuracy difference; each claim's verdict with its interval in the
rule's unit. The same numbers as report.md's tables (which they are computed beside, from the
same summaries), and the test accuracies, which report.md does not show; where report.md shows
a number as text, the text is here too (`text`), so the two can be matched.

Conventions (also in the file's `about`): accuracies are fractions (0-1); an interval is
{point, low, high, n, method}, point null when only bounds are known, a bound null when it is
unbounded (a run that never reached a target: the speed-up may be infinite); steps `by` null:
never reached within the run's budget (`after`).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from bnbench.report.claims import UNITS, judge
from bnbench.report.plots import cell_title
from bnbench.report.stats import Interval
from bnbench.report.summary import (
    FRACTIONS, VariantSummary, cell_of, contrast, drift_means, end_acc, last_quarter_gain, mean_sd, mean_threshold,
    median_steps, paired_speedup,
)
from bnbench.results.store import finite

if TYPE_CHECKING:
    from bnbench.report.build import Report

SCHEMA = 1
ABOUT = ("Accuracies are fractions (0-1). An interval is {point, low, high, n, method}: the mean over seeds and its "
         "95% bootstrap interval (method '95% CI'), the range over seeds with fewer than 3 ('range'), or Wilson's "
         "interval for a proportion; point null: only bounds are known (censored runs); a bound null: unbounded. "
         "Speed-ups are the reference's steps / the variant's to the reference's end accuracy (the target), paired "
         "by seed. steps_to_target per seed: reached after `after` and by `by` steps; `by` null: never within "
         "`after` (the budget). Claims: verdict and interval by bnbench/report/claims.py, in `unit`.")


def interval(iv: Interval | None) -> dict | None:
    if iv is None:
        return None
    return {"point": iv.point, "low": iv.low, "high": iv.high, "n": iv.n, "method": iv.method}


def _stat(summary: VariantSummary, values: list) -> dict:
    ms = mean_sd(values)
    return {"mean": ms[0] if ms else None, "sd": ms[1] if ms else None,
            "per_seed": [{"seed": r.seed, "value": v} for r, v in zip(summary.rows, values)]}


def _variant(name: str, s: VariantSummary, ref: VariantSummary | None, steps_text: str, speedup_text: str) -> dict:
    out = {
        "variant": name,
        "runs": s.n,
        "statuses": s.statuses(),
        "best_acc": _stat(s, s.field("best_acc")),
        "final_acc": _stat(s, s.field("final_acc")),
        "end_acc": _stat(s, [end_acc(r.record) for r in s.rows]),
        "last_quarter_gain": _stat(s, [last_quarter_gain(r.record) for r in s.rows]),  # ~0: on a plateau
        "test_acc_at_best": _stat(s, s.field("test_acc_at_best")),  # reported beside, never selected on
        "final_test_acc": _stat(s, s.field("final_test_acc")),
        "drift": drift_means(s),
    }
    if ref is None:
        return out
    reaches = [(r.seed, r.reach) for r in s.rows if r.reach is not None]
    med = median_steps([x for _, x in reaches])
    out["steps_to_target"] = {
        "median": med if med is not None and math.isfinite(med) else None,
        "text": steps_text,
        "per_seed": [{"seed": seed, "after": x.after, "by": None if x.censored else x.by} for seed, x in reaches],
    }
    if s is not ref and s.rows and ref.rows:
        out["speedup"] = {**(interval(paired_speedup(s, ref).interval) or {}), "text": speedup_text}
        out["speedup_vs_target"] = [{"fraction": f, "target": mean_threshold(ref, f),
                                     "interval": interval(paired_speedup(s, ref, f).interval)} for f in FRACTIONS]
    return out


def _cell(rep: Report, cell: tuple, by_variant: dict, texts: dict) -> dict:
    spec, ref_name = rep.spec, rep.ref
    ref = by_variant.get(ref_name) if ref_name else None
    out = {
        "cell": dict(zip(rep.keys, cell)),
        "title": cell_title(rep.keys, cell),
        "targets": [{"seed": r.seed, "target": r.target} for r in ref.rows] if ref else [],
        "variants": [_variant(name, s, ref, *texts.get(name, ("", ""))) for name, s in by_variant.items()],
        "contrasts": [],
        "claims": [],
    }
    if ref_name:
        for a, b in spec.contrasts:
            c = contrast(by_variant[a], by_variant[b])
            out["contrasts"].append({
                "variant": a, "against": b, "speedup": interval(c.speedup.interval),
                "never_reached": {"variant": c.speedup.censored, "against": c.speedup.ref_censored},
                "end_acc_difference": interval(c.end_diff)})
    for claim in spec.claims:
        j = judge(claim, by_variant, ref_name)
        out["claims"].append({
            "claim": claim.get("claim", ""), "rule": claim.get("rule"), "variant": claim.get("variant"),
            "reference": claim.get("reference", ref_name), "paper": claim.get("paper"), "verdict": j.verdict,
            "unit": UNITS.get(claim.get("rule")), "interval": interval(j.interval), "n": j.n,
            "observed": j.observed, "effect": j.effect, "against_paper": j.paper})
    return out


def summary(rep: Report, texts: dict, tables: list[str]) -> dict:
    """`texts`: {cell: {variant: (steps to target, speed-up)}} as report.md shows them."""
    records = rep.records
    git = records[0]["env"].get("git") or {}
    return {
        "schema": SCHEMA,
        "about": ABOUT,
        "study": rep.spec.name,
        "launch": rep.meta.get("launch"),
        "kind": rep.meta.get("kind", "study"),
        "description": rep.spec.description,
        "reference": rep.ref,
        "grid_keys": rep.keys,
        "seeds": rep.meta.get("seeds"),
        "variants": list(rep.spec.variants),
        "code": {"commit": git.get("sha"),
                 "dirty_runs": sum(bool((r["env"].get("git") or {}).get("dirty")) for r in records)},
        "cells": [_cell(rep, cell, bv, texts.get(cell, {})) for cell, bv in rep.cells.items()],
        "runs": [{"variant": r["variant"], "seed": r["seed"], "cell": dict(zip(rep.keys, cell_of(r, rep.keys))),
                  "status": r["status"], "steps": r["steps"], "max_steps": r["max_steps"], "best_acc": r["best_acc"],
                  "best_step": r["best_step"], "final_acc": r["final_acc"], "end_acc": end_acc(r),
                  "train_s": r["train_s"], "run_id": r["run_id"]} for r in records],
        "figures": [p.name for p in rep.figures],
        "tables": tables,
    }


def to_json(data: dict) -> str:
    return json.dumps(finite(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
