"""What W&B holds, read back from the offline `.wandb` files (tests/wandb_log.py) of a tiny real
study: `bnbench study` through the real CLI on generated data, two variants, one seed.

Each job's run holds its config choices, its validation-accuracy curve (the record's curve) and
the record's figures; the report's run, in the study's group, holds summary.json's figures and
claims as tables (bnbench/report/wandb_summary.py). With logger=none there is no report run, and
a W&B server that cannot be reached never fails the report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnbench.report.wandb_summary import log_report_run
from bnbench.results.archive import read_archive, write_archive
from bnbench.results.store import read_records
from conftest import run_cli
from test_wandb_unreachable import BOUND, SLACK, closed_port, online_env
from wandb_log import config, history, summary, summary_and_run, table

STUDY = """\
description: tiny
seeds: [0]
variants:
  plain: [experiment=mnist_baseline]
  bn: [experiment=mnist_bn]
grid:
  recipe.lr: [2.0]  # where the network without BN leaves chance within 80 steps: a target to race to
reference: plain
claims:
  - {claim: BN is faster, rule: faster, variant: bn}
  - {claim: BN ends higher, rule: higher_final, variant: bn}
"""
NORM = {"plain": "none", "bn": "batch"}


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_data) -> Path:
    root = tmp_path_factory.mktemp("wandb_study")
    (root / "tiny.yaml").write_text(STUDY)
    # hydra/launcher=basic: the jobs one after the other in this process (joblib's workers would
    # each import torch again)
    proc = run_cli("study", str(root / "tiny.yaml"), f"data.root={tiny_data}", "trainer.max_steps=80",
                   "run.eval_every=20", "hydra/launcher=basic", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def wandb_runs(root: Path) -> dict[str, Path]:
    """job_type -> the run's .wandb file: one per job type."""
    runs = {}
    for path in sorted((root / "outputs").rglob("offline-run-*/*.wandb")):
        job_type = summary_and_run(path)[1]["job_type"]
        assert job_type not in runs, f"two runs of job type {job_type}"
        runs[job_type] = path
    return runs


def test_each_job_run_holds_its_choices_curve_and_figures(study):
    runs = wandb_runs(study)
    records = {r["variant"]: r for r in read_records(next((study / "results" / "tiny").iterdir()))}
    assert sorted(records) == ["bn", "plain"]
    for variant, rec in records.items():
        path = runs[variant]
        cfg = config(path)
        assert cfg["choices"] == rec["choices"] and cfg["choices"]["norm"] == NORM[variant]
        assert cfg["choices"]["model"] == "mlp" and cfg["recipe"]["lr"] == rec["recipe"]["lr"] == 2.0
        assert cfg["run_id"] == rec["run_id"] and cfg["study"]["variant"] == variant
        # the curve: every evaluation, as the record has it (float32 in W&B, 6 digits in the record).
        # Lightning logs an evaluation before it counts the step that triggered it: its
        # trainer/global_step is the record's step - 1
        rows = [row for row in history(path) if "val/acc" in row]
        curves = rec["curves"]
        assert [row["trainer/global_step"] + 1 for row in rows] == curves["step"] == [20, 40, 60, 80]
        assert [row["val/acc"] for row in rows] == pytest.approx(curves["acc"], abs=1e-6)
        # test accuracy where the evaluation covered the test set (the curve's null elsewhere)
        tested = {row["trainer/global_step"] + 1: row["test/acc"] for row in rows if "test/acc" in row}
        assert tested == pytest.approx({step: t for step, t in zip(curves["step"], curves["test_acc"])
                                        if t is not None}, abs=1e-6)
        assert 80 in tested  # the last evaluation always does
        # the figures: the record's, and W&B's own summaries of the curve
        s = summary(path)
        for key in ("status", "best_acc", "best_step", "test_acc_at_best", "final_acc", "final_test_acc", "steps",
                    "steps_to_target", "val_size", "test_size"):
            assert s[key] == rec[key], key
        assert s["val/acc"]["max"] == pytest.approx(rec["best_acc"], abs=1e-6)
        assert s["test/acc"]["last"] == pytest.approx(rec["final_test_acc"], abs=1e-6)


def expected_rows(data: dict) -> tuple[dict, list[dict]]:
    """What the report run's tables should hold, read off summary.json: {(cell, variant): row}
    of summary_table, and claims_table's rows, each as {column: value}."""
    summary_rows = {}
    for cell in data["cells"]:
        for v in cell["variants"]:
            sp = v.get("speedup") or {}
            summary_rows[(cell["title"], v["variant"])] = {
                "cell": cell["title"], "variant": v["variant"], "runs": v["runs"],
                "seeds": ", ".join(str(s["seed"]) for s in v["best_acc"]["per_seed"]),
                "statuses": ", ".join(f"{n} {status}" for status, n in v["statuses"].items()),
                "steps_to_target": v["steps_to_target"]["median"], "steps_to_target_text": v["steps_to_target"]["text"],
                "speedup": sp.get("point"), "speedup_low": sp.get("low"), "speedup_high": sp.get("high"),
                "speedup_method": sp.get("method"), "speedup_text": sp.get("text"),
                "best_acc": v["best_acc"]["mean"], "best_acc_sd": v["best_acc"]["sd"],
                "final_acc": v["final_acc"]["mean"], "final_acc_sd": v["final_acc"]["sd"],
                "end_acc": v["end_acc"]["mean"], "end_acc_sd": v["end_acc"]["sd"],
                "test_acc_at_best": v["test_acc_at_best"]["mean"], "final_test_acc": v["final_test_acc"]["mean"],
                "verdicts": "; ".join(f"{c['claim']}: {c['verdict']}" for c in cell["claims"]
                                      if c["variant"] == v["variant"])}
    claims_rows = [{"cell": cell["title"], "claim": c["claim"], "rule": c["rule"], "variant": c["variant"],
                    "reference": c["reference"], "verdict": c["verdict"], "observed": c["observed"],
                    "effect": c["effect"], "unit": c["unit"], **{k: (c["interval"] or {}).get(k) for k in
                                                                  ("point", "low", "high", "n", "method")},
                    "against_paper": c["against_paper"]} for cell in data["cells"] for c in cell["claims"]]
    return summary_rows, claims_rows


def logged_rows(path: Path) -> tuple[dict, list[dict]]:
    """The report run's tables, as expected_rows gives them."""
    summary_table, claims_table = table(path, "summary_table"), table(path, "claims_table")
    rows = [dict(zip(summary_table["columns"], r)) for r in summary_table["data"]]
    by_key = {(row["cell"], row["variant"]): row for row in rows}
    assert len(by_key) == len(rows)
    return by_key, [dict(zip(claims_table["columns"], r)) for r in claims_table["data"]]


def test_the_report_run_holds_summary_json_as_tables(study):
    path = wandb_runs(study)["report"]
    _, run = summary_and_run(path)
    assert run["group"] == "tiny" and run["exit_code"] == 0  # the group of the jobs' runs
    data = json.loads((study / "reports" / "tiny" / "summary.json").read_text())
    cfg = config(path)
    assert (cfg["study"], cfg["launch"], cfg["reference"]) == ("tiny", data["launch"], "plain")
    rows, claims = logged_rows(path)
    assert (rows, claims) == expected_rows(data)
    assert rows.keys() == {("recipe.lr=2.0", "plain"), ("recipe.lr=2.0", "bn")} and len(claims) == 2
    # ... which are the runs' figures (one seed: a mean is the run's own)
    for (_, variant), row in rows.items():
        rec = next(r for r in read_archive(study / "reports" / "tiny")[1] if r["variant"] == variant)
        assert (row["best_acc"], row["final_acc"], row["test_acc_at_best"], row["final_test_acc"]) == (
            rec["best_acc"], rec["final_acc"], rec["test_acc_at_best"], rec["final_test_acc"])
    bn = rows[("recipe.lr=2.0", "bn")]
    assert bn["speedup"] is not None
    assert bn["verdicts"] == f"BN is faster: {claims[0]['verdict']}; BN ends higher: {claims[1]['verdict']}"
    assert claims[1]["point"] is not None  # higher_final always has an interval (faster may have no target)


def test_a_report_rebuilt_from_its_records_logs_no_new_run(study, tmp_path):
    """`bnbench report reports/<study>` (a committed report, rebuilt from its records.jsonl.gz)
    rebuilds the files; the launch's report run is the one its study logged."""
    before = sorted((study / "outputs").rglob("offline-run-*"))
    proc = run_cli("report", str(study / "reports" / "tiny"), "--out", str(tmp_path / "again"), cwd=study)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "again" / "summary.json").read_text() == (study / "reports" / "tiny" / "summary.json").read_text()
    assert sorted((study / "outputs").rglob("offline-run-*")) == before and not (tmp_path / "outputs").exists()


def test_every_column_is_its_own_figure(study, tmp_path):
    """summary.json with every figure made distinct (a real run's are often equal: best and final
    accuracy of a curve still rising), logged offline: each column holds its own figure."""
    folder = tmp_path / "distinct"
    shutil.copytree(study / "reports" / "tiny", folder)
    data = json.loads((folder / "summary.json").read_text())
    count = iter(range(1, 10_000))
    texts = {"text", "method", "observed", "effect", "verdict", "unit", "against_paper", "rule"}

    def distinct(x, key=None):
        if isinstance(x, dict):
            return {k: distinct(v, k) for k, v in x.items()}
        if isinstance(x, list):
            return [distinct(v, key) for v in x]
        if isinstance(x, bool) or x is None:
            return x
        if isinstance(x, (int, float)):
            return next(count) / 1000
        return f"{x} #{next(count)}" if key in texts else x

    data["cells"] = distinct(data["cells"])
    (folder / "summary.json").write_text(json.dumps(data))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    code = f"from bnbench.report.wandb_summary import log_report_run; print(log_report_run({str(folder)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp_path / proc.stdout.splitlines()[0]).glob("*.wandb")
    summary_rows, claims_rows = expected_rows(data)
    assert logged_rows(path) == (summary_rows, claims_rows)
    values = [v for row in [*summary_rows.values(), *claims_rows] for k, v in row.items() if k not in ("cell",)]
    numbers = [v for v in values if isinstance(v, float)]
    assert len(numbers) >= 20 and len(set(numbers)) == len(numbers)  # no two figures alike


def _with_logger(study: Path, folder: Path, **logger) -> Path:
    """A copy of the study's report folder whose records ran with these logger settings."""
    shutil.copytree(study / "reports" / "tiny", folder)
    meta, records = read_archive(folder)
    for r in records:
        r["config"]["logger"].update(logger)
    write_archive(folder, meta, records)
    return folder


def test_logger_none_logs_no_report_run(study, tmp_path, monkeypatch):
    folder = _with_logger(study, tmp_path / "none", kind="none")
    monkeypatch.chdir(study)  # where the launch's outputs/ is (study.json's sweep_dir is relative to it)
    before = sorted((study / "outputs").rglob("offline-run-*"))
    assert log_report_run(folder) is None
    assert sorted((study / "outputs").rglob("offline-run-*")) == before


def test_an_unreachable_server_does_not_fail_the_report(study, tmp_path):
    """logger.on_unreachable=fail stops a job, never the report: one WARNING line, nothing logged.
    (The function alone, in a process of its own: `bnbench report` calls it after writing the
    report; the study above went through that call.)"""
    folder = _with_logger(study, tmp_path / "online", init_timeout=BOUND, on_unreachable="fail")
    before = sorted((study / "outputs").rglob("offline-run-*"))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **online_env(f"http://127.0.0.1:{closed_port()}", tmp_path)}
    code = f"from bnbench.report.wandb_summary import log_report_run; print(log_report_run({str(folder)!r}))"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=study, env=env, capture_output=True, text=True,
                          timeout=BOUND + SLACK)
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == "None", proc.stderr[-3000:]
    assert time.perf_counter() - t0 < BOUND + SLACK
    warning = [line for line in proc.stderr.splitlines() if "the report's online run" in line]
    assert len(warning) == 1 and "not logged (logger.on_unreachable=fail)" in warning[0], proc.stderr[-3000:]
    assert sorted((study / "outputs").rglob("offline-run-*")) == before
