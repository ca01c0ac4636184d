"""`bnbench restore`: a committed report's runs written back into the results store, so that its
launch can be finished on another machine or in a later sitting (bnbench/results/archive.py)."""

from __future__ import annotations

import json
import shutil

from conftest import records_under, run_cli

from bnbench.results.archive import read_archive, write_archive
from bnbench.results.store import read_records

STUDY = "seeds: [0]\nvariants:\n  bn: [experiment=mnist_bn]\nreference: bn\n"


def test_a_restored_launch_is_finished_by_relaunching_it(tiny_data, tmp_path):
    """Seed 0 run and reported; the results deleted; restored from the report folder alone; a
    seed added to the study: the relaunch runs seed 1 only and the report holds both."""
    study = tmp_path / "grow.yaml"
    study.write_text(STUDY)
    args = ["study", str(study), f"data.root={tiny_data}", "trainer.max_steps=30", "run.eval_every=10", "logger=none"]
    first = run_cli(*args, "study.launch=L", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = json.loads(records_under(tmp_path / "results")[0].read_text())
    shutil.move(tmp_path / "reports" / "grow", tmp_path / "committed")
    shutil.rmtree(tmp_path / "results")

    restored = run_cli("restore", "committed", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr[-2000:]
    assert "restored 1 run(s) into results/grow/L" in restored.stdout
    # the command that finishes it: the study file, the launch's own overrides, the launch
    assert (f"to finish it: bnbench study {study} data.root={tiny_data} trainer.max_steps=30 run.eval_every=10 "
            "logger=none study.launch=L") in restored.stdout
    assert "made at commit" not in restored.stdout  # the same checkout
    (path,) = records_under(tmp_path / "results")
    assert json.loads(path.read_text()) == before  # the record as it was written, curves beside it
    assert json.loads((path.parent / "curves.json").read_text()) == read_archive(tmp_path / "committed")[1][0]["curves"]
    again = run_cli("restore", "committed", cwd=tmp_path)  # runs in the store are left alone
    assert again.returncode == 0 and "restored 0 run(s) into results/grow/L (1 already there)" in again.stdout

    study.write_text(STUDY.replace("[0]", "[0, 1]"))
    finished = run_cli(*args, "study.launch=L", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "1 to run, 1 done before" in finished.stdout + finished.stderr
    recs = read_records(tmp_path / "results" / "grow" / "L")
    assert [(r["seed"], r["run_id"] == before["run_id"]) for r in recs] == [(0, True), (1, False)]
    assert recs[0]["started"] == before["started"]  # kept, not run again
    assert "| `bn` | 1 |" in (tmp_path / "reports" / "grow" / "report.md").read_text()


def test_restore_refuses_what_it_cannot_restore(tmp_path):
    """No archive, a `bnbench train -m` sweep's report, another study's launch: one line, exit 2,
    nothing written."""
    (tmp_path / "empty").mkdir()
    proc = run_cli("restore", "empty", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "bnbench: error: empty holds no report archive (records.jsonl.gz and study.json): nothing to restore"]

    run = {"variant": "bn", "seed": 0, "run_id": "0123456789ab", "curves": {"step": [], "acc": [], "train_s": []}}
    write_archive(tmp_path / "sweep", {"kind": "multirun", "study": "adhoc", "launch": "L"}, [run])
    proc = run_cli("restore", "sweep", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "sweep is the report of a `bnbench train -m` sweep, not of a study launch" in proc.stderr

    write_archive(tmp_path / "one", {"study": "one", "launch": "L"}, [run])
    (tmp_path / "results" / "one" / "L").mkdir(parents=True)
    (tmp_path / "results" / "one" / "L" / "study.json").write_text(json.dumps({"study": "other", "launch": "L"}))
    proc = run_cli("restore", "one", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "results/one/L/study.json is another study's launch: nothing restored" in proc.stderr
    assert not records_under(tmp_path / "results")
