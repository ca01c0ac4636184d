"""Nothing lost (issue 10, items 2, 3 and 5): input checked before training, a record that
survives a late write error, an evaluation at the last step, crash-safe result files and
readers that skip what is not a record."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnbench.errors import ConfigError
from bnbench.results import store
from bnbench.results.store import (CURVES, RECORD, STUDY, UnreadableRecord, read_record, read_records, write_atomic,
                                   write_json_atomic)
from conftest import compose, records_under, run_cli

QUICK = ["logger=none"]


def curves_of(record_path: Path) -> dict:
    return json.loads((record_path.parent / CURVES).read_text())


def bnbench_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bnbench" and r.levelno >= logging.WARNING]


def one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("bnbench: error:"), lines
    return lines[0]


# --- item 3: an evaluation at the last step ------------------------------------------------------


@pytest.mark.parametrize("steps, evals", [(30, [20, 30]), (40, [20, 40]), (10, [10])])
def test_a_run_ends_with_one_evaluation_at_its_last_step(tiny_data, tmp_path, steps, evals):
    """30 steps, eval_every 20: evaluations at 20 and 30; 40 steps: at 20 and 40, not twice at 40;
    a run shorter than the interval: one, at its end."""
    from bnbench.train import run

    rec = run(compose([f"data.root={tiny_data}", *QUICK, f"paths.results={tmp_path}", f"trainer.max_steps={steps}",
                       "run.eval_every=20"]))
    (path,) = records_under(tmp_path)
    curves = curves_of(path)
    assert curves["step"] == evals
    assert rec["status"] == "completed" and rec["steps"] == steps
    assert rec["final_acc"] is not None and rec["final_acc"] == curves["acc"][-1]
    assert json.loads(path.read_text())["final_acc"] == rec["final_acc"]


def test_a_run_ended_by_epochs_is_evaluated_after_fit(tiny_data, tmp_path):
    """Training that stops before trainer.max_steps (here trainer.max_epochs: 600 examples in
    batches of 60 = 10 steps) still ends with an evaluation at its last step."""
    from omegaconf import open_dict

    from bnbench.train import run

    cfg = compose([f"data.root={tiny_data}", *QUICK, f"paths.results={tmp_path}", "trainer.max_steps=100",
                   "run.eval_every=4", "recipe.batch_size=60"])
    with open_dict(cfg):
        cfg.trainer.max_epochs = 1
    rec = run(cfg)
    curves = curves_of(records_under(tmp_path)[0])
    assert rec["steps"] == 10 and curves["step"] == [4, 8, 10]
    assert rec["final_acc"] == curves["acc"][-1]


def test_a_two_process_run_ends_with_an_evaluation_at_max_steps(tiny_data, tmp_path):
    """Under DDP the last evaluation is Lightning's, on both ranks (a collective); the job's
    process gets rank 0's record back."""
    from bnbench.train import run

    rec = run(compose([f"data.root={tiny_data}", *QUICK, f"paths.results={tmp_path}", "trainer=ddp",
                       "trainer.devices=2", "trainer.accelerator=cpu", "experiment=mnist_bn",
                       "trainer.max_steps=25", "run.eval_every=10"]))
    (path,) = records_under(tmp_path)
    curves = curves_of(path)
    assert curves["step"] == [10, 20, 25]
    assert rec == json.loads(path.read_text())
    assert rec["devices"] == 2 and rec["steps"] == 25 and rec["final_acc"] == curves["acc"][-1]


def test_max_steps_zero_is_a_one_line_error(tiny_data, tmp_path):
    proc = run_cli("train", f"data.root={tiny_data}", *QUICK, "trainer.max_steps=0", cwd=tmp_path, timeout=120)
    assert "trainer.max_steps=0" in one_line_error(proc)
    assert not records_under(tmp_path) and not (tmp_path / "outputs").exists()


# --- item 2: checked before training; a record that survives a late write error --------------


def test_an_unwritable_results_directory_fails_at_once(tiny_data, tmp_path):
    """As root every chmod'ed directory is writable: a path under a regular file is not. The
    recipe's full length (thousands of steps) would take minutes: the error comes before it."""
    (tmp_path / "afile").write_text("not a directory\n")
    results = tmp_path / "afile" / "results"
    proc = run_cli("train", f"data.root={tiny_data}", *QUICK, f"paths.results={results}", cwd=tmp_path, timeout=60)
    line = one_line_error(proc)
    assert f"paths.results={results}" in line and "not a directory" in line
    assert not (tmp_path / "outputs").exists() and not records_under(tmp_path)


@pytest.mark.parametrize("where", ["file", "sys", "ok"])
def test_writable_check(tmp_path, where):
    from bnbench.preflight import check_writable

    (tmp_path / "afile").write_text("x")
    path = {"file": tmp_path / "afile" / "a" / "b", "sys": Path("/sys/bnbench-results"),
            "ok": tmp_path / "new" / "x"}[where]
    if where == "sys" and not Path("/sys/kernel").is_dir():
        pytest.skip("no sysfs here (where not even root can create a file)")
    before = sorted(tmp_path.rglob("*"))
    if where == "ok":
        check_writable(path, "paths.results")
    else:
        with pytest.raises(ConfigError, match=f"paths.results={path}"):
            check_writable(path, "paths.results")
    assert sorted(tmp_path.rglob("*")) == before  # the probe leaves nothing behind


def test_the_record_survives_a_failing_write(tiny_data, tmp_path, monkeypatch, caplog):
    """Disk full when the record is written: it goes elsewhere (here, outside Hydra, a temporary
    folder) and one WARNING line says where."""
    import bnbench.train as train

    real, calls = train.write_run, []

    def full_once(run_dir, record, curves):
        calls.append(run_dir)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(run_dir, record, curves)

    monkeypatch.setattr(train, "write_run", full_once)
    with caplog.at_level(logging.WARNING, logger="bnbench"):
        rec = train.run(compose([f"data.root={tiny_data}", *QUICK, f"paths.results={tmp_path / 'results'}",
                                 "trainer.max_steps=6", "run.eval_every=3"]))
    warnings = bnbench_warnings(caplog)
    assert len(warnings) == 1 and "No space left on device" in warnings[0], warnings
    fallback = calls[1]
    try:
        assert str(fallback) in warnings[0] and fallback != calls[0]
        saved = read_record(fallback / RECORD)
        assert saved["run_id"] == rec["run_id"] and saved["status"] == "completed" and saved["curves"]["step"] == [3, 6]
    finally:
        shutil.rmtree(fallback, ignore_errors=True)
    assert not records_under(tmp_path / "results")


def test_save_record_falls_back_to_the_output_folder_then_a_temporary_one(tmp_path, caplog):
    from bnbench.train import save_record

    (tmp_path / "gone").write_text("a file where the results directory was\n")
    record, curves = {"run_id": "x"}, {"step": [1], "acc": [0.5], "train_s": [0.1]}
    with caplog.at_level(logging.WARNING, logger="bnbench"):
        path = save_record(tmp_path / "gone" / "run", tmp_path / "out", record, curves)
        assert path == tmp_path / "out" / RECORD and json.loads(path.read_text()) == record
        path = save_record(tmp_path / "gone" / "run", tmp_path / "gone" / "out", record, curves)
    try:
        assert json.loads(path.read_text()) == record and json.loads((path.parent / CURVES).read_text()) == curves
        assert [str(path.parent) in m for m in bnbench_warnings(caplog)] == [False, True]
    finally:
        shutil.rmtree(path.parent)


MOVING_RESULTS = '''
import os
from pathlib import Path

from bnbench.models.mlp import MLP


class ResultsGoneMLP(MLP):
    """The paper's MLP; at its third training forward pass the results directory becomes a file."""

    calls = 0

    def forward(self, x):
        if self.training:
            ResultsGoneMLP.calls += 1
            if ResultsGoneMLP.calls == 3:
                results = Path(os.environ["RESULTS"])
                if results.is_dir():
                    import shutil
                    shutil.rmtree(results)
                results.write_text("not a directory any more\\n")
        return super().forward(x)
'''


def test_results_directory_replaced_mid_run_record_goes_to_the_output_folder(tiny_data, tmp_path):
    """Through the real CLI: the record lands in the job's Hydra output folder, exit 0, one
    WARNING line naming it."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "results_gone.py").write_text(MOVING_RESULTS)
    proc = run_cli("train", f"data.root={tiny_data}", *QUICK, "model._target_=results_gone.ResultsGoneMLP",
                   "trainer.max_steps=6", "run.eval_every=3", cwd=tmp_path, timeout=120,
                   env={"PYTHONPATH": str(tmp_path / "plugins"), "RESULTS": str(tmp_path / "results")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = records_under(tmp_path / "outputs")
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and str(path.parent) in warnings[0], warnings
    rec = read_record(path)
    assert rec["status"] == "completed" and rec["steps"] == 6 and rec["curves"]["step"] == [3, 6]
    assert (tmp_path / "results").is_file()


# --- item 5: crash-safe files, readers that skip what is not a record --------------------------


def test_write_atomic_leaves_nothing_behind_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "record.json"
    write_json_atomic(target, {"old": True})
    for broken in ("replace", "fsync"):
        with monkeypatch.context() as m:
            m.setattr(store.os, broken, lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, f"{broken} failed")))
            with pytest.raises(OSError, match=f"{broken} failed"):
                write_json_atomic(target, {"new": True})
        assert json.loads(target.read_text()) == {"old": True}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]
    write_atomic(tmp_path / "fig.png", b"\x89PNG")  # bytes too (figures)
    assert (tmp_path / "fig.png").read_bytes() == b"\x89PNG"
    assert (tmp_path / "fig.png").stat().st_mode & 0o777 == 0o666 & ~store._umask()


WRITER = r'''
import json, sys, time
from pathlib import Path
from bnbench.results.store import RECORD_KEYS, STUDY, write_json_atomic, write_run

launch, me, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
payload = "x" * 50_000  # big enough that a torn write would show
while not (launch.parent / "go").exists():
    time.sleep(0.002)
for k in range(n):
    record = {**dict.fromkeys(RECORD_KEYS), "run_id": f"{me}-{k}", "variant": f"w{me}", "seed": k, "payload": payload}
    curves = {"step": [k], "acc": [0.5], "train_s": [1.0], "payload": payload}
    write_run(launch / f"w{me}_s{k}", record, curves)  # its own run
    write_run(launch / "shared", {**record, "variant": "shared", "seed": -1}, curves)  # one run, written by all
    write_json_atomic(launch / STUDY, {"writer": me, "k": k, "payload": payload})  # the launch's file
'''


def test_many_processes_writing_at_once_lose_nothing(tmp_path, caplog):
    """12 processes write records into one launch directory at once, each also rewriting the same
    run's record and the launch's study.json (relaunches racing each other, jobs of one study):
    every file is always whole, every record readable afterwards, no temporary file left."""
    launch, writers, n = tmp_path / "results" / "adhoc" / "L", 12, 8
    launch.mkdir(parents=True)
    src = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(launch), str(i), str(n)], env=env)
             for i in range(writers)]
    time.sleep(0.5)
    (launch.parent / "go").touch()
    seen = 0
    while any(p.poll() is None for p in procs):  # meanwhile, a reader never sees a torn file
        time.sleep(0.002)
        for path in (launch / STUDY, launch / "shared" / RECORD):
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            assert json.loads(text)["payload"]
            seen += 1
    assert [p.wait() for p in procs] == [0] * writers and seen
    with caplog.at_level(logging.WARNING, logger="bnbench"):
        recs = read_records(launch)
    assert not bnbench_warnings(caplog)
    assert len(recs) == writers * n + 1
    assert {(r["variant"], r["seed"]) for r in recs} == {(f"w{i}", k) for i in range(writers) for k in range(n)} | {
        ("shared", -1)}
    assert all(r["curves"]["payload"] for r in recs)
    assert json.loads((launch / STUDY).read_text())["k"] == n - 1
    assert not [p for p in launch.rglob("*") if p.name.endswith(".tmp")]


def damage(launch: Path, good: Path) -> list[Path]:
    """Next to a good run: files that are not finished runs' records."""
    text = good.read_text()
    bad = {
        "truncated": text[: len(text) // 2],
        "foreign": "these are not the droids you are looking for\n",
        "binary": "\x00\xff\xfe\x00",  # not even UTF-8
        "missing_keys": json.dumps({"run_id": "abc", "status": "completed"}),
        "a_list": "[1, 2, 3]",
    }
    paths = []
    for name, content in bad.items():
        (launch / name).mkdir()
        (launch / name / RECORD).write_bytes(content.encode("latin-1"))
        (launch / name / CURVES).write_text((good.parent / CURVES).read_text())
        paths.append(launch / name / RECORD)
    (launch / "no_curves").mkdir()
    (launch / "no_curves" / RECORD).write_text(text)
    paths.append(launch / "no_curves" / CURVES)
    stray = [launch / f".{STUDY}.k2j3h4.tmp", good.parent / f".{RECORD}.abcd12.tmp"]
    for p in stray:
        p.write_text('{"half": ')
    return paths + stray


def test_readers_and_bnbench_report_skip_what_is_not_a_record(tiny_data, tmp_path, caplog):
    from bnbench.train import run

    launch = tmp_path / "results" / "tiny" / "L1"
    spec = {"seeds": [0], "variants": {"plain": ["experiment=mnist_baseline"]}}
    rec = run(compose([f"data.root={tiny_data}", *QUICK, f"paths.results={tmp_path / 'results'}", "study.name=tiny",
                       "study.launch=L1", "study.variant=plain", "experiment=mnist_baseline", "trainer.max_steps=6",
                       "run.eval_every=3"]))
    (good,) = records_under(launch)
    write_json_atomic(launch / STUDY, {"study": "tiny", "spec": spec, "spec_path": str(tmp_path / "tiny.yaml"),
                                       "launch": "L1", "seeds": [0], "command": ["bnbench", "study", "tiny"],
                                       "jobs": [["experiment=mnist_baseline", "seed=0"]], "started": "t0",
                                       "finished": "t1", "wall_s": 1.0, "launcher": {}})
    bad = damage(launch, good)
    with pytest.raises(UnreadableRecord, match="truncated"):
        read_record(launch / "truncated" / RECORD)
    with caplog.at_level(logging.WARNING, logger="bnbench"):
        recs = read_records(launch)
    assert [r["run_id"] for r in recs] == [rec["run_id"]]
    for path in bad:
        assert sum(str(path) in m for m in bnbench_warnings(caplog)) == 1, (path, bnbench_warnings(caplog))
    # the command: the report is written, each skipped file named on stderr
    proc = run_cli("report", str(launch), "--out", str(tmp_path / "report"), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in bad:
        assert str(path) in proc.stderr, path
    assert "| `plain` | 0 |" in (tmp_path / "report" / "report.md").read_text()
    # a launch whose study.json is not JSON: one line naming it, exit 2
    (launch / STUDY).write_text('{"study": "tiny", "spe')
    proc = run_cli("report", str(launch), "--out", str(tmp_path / "report"), cwd=tmp_path, timeout=120)
    assert str(launch / STUDY) in one_line_error(proc)
