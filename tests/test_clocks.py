"""The two training clocks of a run (wall and CPU, bnbench/callbacks/tracker.py) and what a
report says of them (bnbench/report/clocks.py): a CPU run that shared its cores is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnbench.callbacks.tracker import TrainingClock
from bnbench.report.build import build_report
from bnbench.report.clocks import SHARED_BELOW, clock_note, cpu_share
from bnbench.results.archive import write_archive
from bnbench.results.record import Record
from test_report_outputs import fake_record


def cpu_record(train_s: float, train_cpu_s: float | None, threads: int = 1, device: str = "cpu", seed: int = 0,
               variant: str = "base") -> dict:
    rec = fake_record(variant, seed, 0.1, 0.8, 50)
    rec["env"] = {**rec["env"], "device": device, "torch_threads": threads}
    rec.update(train_s=train_s, train_cpu_s=train_cpu_s)
    return rec


def test_the_clock_counts_training_only_and_carries_earlier_attempts():
    t = [0.0]
    clock = TrainingClock(lambda: t[0])
    assert clock.train_s == 0.0  # not started
    clock.start()
    t[0] = 3.0
    clock.start_eval()
    t[0] = 5.0
    clock.end_eval()
    t[0] = 10.0
    assert clock.train_s == 8.0 and clock.eval_s == 2.0
    resumed = TrainingClock(lambda: t[0])  # a resumed attempt: the state of the first, then its own time
    resumed.before, resumed.eval_s = clock.train_s, clock.eval_s
    resumed.start()
    t[0] = 14.0
    assert resumed.train_s == 12.0 and resumed.eval_s == 2.0


def test_cpu_share_is_cpu_seconds_per_wall_second_and_thread():
    assert cpu_share(Record.from_json(cpu_record(10.0, 15.0, threads=2))) == pytest.approx(0.75)
    assert cpu_share(Record.from_json(cpu_record(10.0, 9.8))) == pytest.approx(0.98)
    assert cpu_share(Record.from_json(cpu_record(10.0, 9.8, device="cuda"))) is None  # a GPU run's CPU waits
    assert cpu_share(Record.from_json(cpu_record(10.0, None))) is None  # a record older than the field


def test_the_note_names_runs_that_shared_their_cores():
    alone = [Record.from_json(cpu_record(10.0, 9.7, seed=s)) for s in range(3)]
    assert "every run had its cores to itself" in clock_note(alone)
    shared = alone + [Record.from_json(cpu_record(10.0, 10.0 * (SHARED_BELOW - 0.01), seed=3))]
    note = clock_note(shared)
    assert "1 run(s) had less than 80% of their cores" in note and "lowest 0.79" in note
    assert "every run" not in note
    # exactly at the threshold is not shared
    assert "every run" in clock_note(alone + [Record.from_json(cpu_record(10.0, 10.0 * SHARED_BELOW, seed=4))])
    assert clock_note([Record.from_json(cpu_record(10.0, None))]) is None
    assert clock_note([Record.from_json(cpu_record(10.0, 9.0, device="cuda"))]) is None


def report_md(folder: Path, records: list[dict]) -> str:
    spec = {"seeds": [0, 1], "variants": {"base": ["experiment=a"], "bn": ["experiment=b"]}, "reference": "base"}
    meta = {"study": "clocks", "launch": "2026-01-01_00-00-00", "spec": spec, "spec_path": "clocks.yaml",
            "seeds": [0, 1], "command": ["bnbench", "study", "clocks"], "started": "then", "finished": "later",
            "wall_s": 60, "launcher": {"_target_": "x.BasicLauncher"}, "jobs": list(range(len(records)))}
    write_archive(folder, meta, records)
    build_report(folder)
    return (folder / "report.md").read_text()


def test_a_report_says_when_its_runs_shared_their_cores(tmp_path):
    records = [cpu_record(10.0, 9.9 if (v, s) != ("bn", 1) else 4.0, seed=s, variant=v)
               for v in ("base", "bn") for s in (0, 1)]
    text = report_md(tmp_path / "shared", records)
    (line,) = [ln for ln in text.splitlines() if ln.startswith("- Clocks:")]
    assert "lowest 0.40" in line and "1 run(s) had less than 80% of their cores" in line
    # records without the CPU clock: no line at all
    for rec in records:
        rec.pop("train_cpu_s")
    assert "Clocks:" not in report_md(tmp_path / "older", records)
