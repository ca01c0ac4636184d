"""Real runs through the real CLI: records, W&B offline, divergence, failure, studies."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import torch

from bnbench.results.store import read_records
from conftest import FASHION_ROOT, compose, needs_fashion, records_under, run_cli
from wandb_log import summary_and_run

REQUIRED = {"run_id", "status", "seed", "choices", "steps", "best_acc", "final_acc", "steps_to_target",
            "time_to_target", "wall_s", "train_s", "eval_s", "train_cpu_s", "env", "config", "recipe", "targets"}


def only_record(root: Path) -> dict:
    paths = records_under(root)
    assert len(paths) == 1, paths
    return json.loads(paths[0].read_text())


@needs_fashion
def test_short_real_run_on_fashion_mnist_writes_record_and_offline_wandb_run(tmp_path):
    proc = run_cli("train", "norm=batch", "trainer.max_steps=300", "run.eval_every=100",
                   "run.targets=[0.5,0.99]", "seed=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = only_record(tmp_path / "results")
    assert REQUIRED <= set(rec)
    assert rec["status"] == "completed" and rec["steps"] == 300 and rec["seed"] == 3
    assert rec["choices"]["data"] == "fashion_mnist" and rec["choices"]["norm"] == "batch"
    assert rec["config"]["data"]["root"] == str(FASHION_ROOT)
    assert 0.5 < rec["best_acc"] <= 1 and rec["final_acc"] is not None
    assert rec["steps_to_target"]["0.5"] in (100, 200, 300) and rec["steps_to_target"]["0.99"] is None
    assert 0 < rec["time_to_target"]["0.5"] <= rec["train_s"] < rec["wall_s"]
    assert 0 < rec["train_cpu_s"]  # the process's CPU seconds over the same stretches (report: clock_note)
    assert rec["env"]["packages"]["torch"] and rec["env"]["device"] == "cpu"
    curves = json.loads((records_under(tmp_path / "results")[0].parent / "curves.json").read_text())
    assert curves["step"] == [100, 200, 300]
    assert len(curves["probe"]) == 4 and len(curves["probe"][0]) == 3 and len(curves["probe"][0][0]) == 100
    assert curves["probe_step"] == [0, 100, 200, 300]  # before any update, then at every evaluation
    # a real W&B run, offline, in the run's output directory, closed (wandb.finish ran)
    runs = list((tmp_path / "outputs").rglob("offline-run-*/*.wandb"))
    assert len(runs) == 1, runs
    summary, run = summary_and_run(runs[0])
    assert summary["best_acc"] == pytest.approx(rec["best_acc"]) and summary["status"] == "completed"
    assert summary["steps_to_target"] == rec["steps_to_target"]
    assert run["group"] == "adhoc" and run["exit_code"] == 0
    assert {"choices", "recipe", "norm", "run_id"} <= run["config"]


def test_logger_none_writes_no_wandb_files(tiny_data, tmp_path):
    proc = run_cli("train", f"data.root={tiny_data}", "logger=none", "trainer.max_steps=20", "run.eval_every=10",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert only_record(tmp_path / "results")["status"] == "completed"
    assert not list(tmp_path.rglob("offline-run-*"))


def test_divergence_ends_the_run_with_status_diverged(tiny_data, tmp_path):
    proc = run_cli("train", f"data.root={tiny_data}", "logger=none", "model.activation=relu", "recipe.lr=1e6",
                   "trainer.max_steps=200", "run.eval_every=50", "run.check_every=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = only_record(tmp_path / "results")
    assert rec["status"] == "diverged" and rec["diverged_at"] is not None and rec["steps"] < 200
    assert rec["final_acc"] is None


def test_a_failing_run_leaves_a_failed_record_and_reraises(tiny_data, tmp_path, monkeypatch):
    from bnbench.system import Classifier
    from bnbench.train import run

    def broken_step(self, batch, batch_idx):
        raise RuntimeError("boom at step %d" % self.global_step)

    monkeypatch.setattr(Classifier, "training_step", broken_step)
    cfg = compose([f"data.root={tiny_data}", "logger=none", f"paths.results={tmp_path}", "trainer.max_steps=5"])
    with pytest.raises(RuntimeError, match="boom"):
        run(cfg)
    rec = only_record(tmp_path)
    assert rec["status"] == "failed" and "boom at step 0" in rec["error"]


def test_population_inference_records_both_accuracies(tiny_data, tmp_path):
    from bnbench.train import run

    cfg = compose([f"data.root={tiny_data}", "logger=none", f"paths.results={tmp_path}", "norm=batch",
                   "norm.impl=bnbench", "norm.inference=population", "norm.population_batches=5",
                   "trainer.max_steps=40", "run.eval_every=20"])
    rec = run(cfg)
    assert rec["population_batches"] == 5
    assert rec["final_acc_ema"] is not None and rec["final_acc"] is not None


def test_hydra_multirun_with_the_basic_sweeper(tiny_data, tmp_path):
    proc = run_cli("train", "-m", f"data.root={tiny_data}", "logger=none", "trainer.max_steps=20",
                   "run.eval_every=10", "recipe.lr=0.1,0.3", "norm=none,batch", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(p.read_text()) for p in records_under(tmp_path / "results")]
    assert sorted((r["recipe"]["lr"], r["choices"]["norm"]) for r in recs) == [
        (0.1, "batch"), (0.1, "none"), (0.3, "batch"), (0.3, "none")]


def test_study_runs_variants_x_grid_x_seeds_with_joblib_and_writes_its_report(tiny_data, tmp_path):
    study = tmp_path / "tiny.yaml"
    study.write_text(
        "description: tiny\nseeds: [0, 1]\nvariants:\n  plain: [experiment=mnist_baseline]\n"
        "  bn: [experiment=mnist_bn]\ngrid:\n  recipe.lr: [0.5]\nreference: plain\n"
        "contrasts:\n  - [bn, plain]\nclaims:\n  - {claim: BN is faster, rule: faster, variant: bn}\n")
    proc = run_cli("study", str(study), f"data.root={tiny_data}", "trainer.max_steps=60", "run.eval_every=20",
                   "hydra.launcher.n_jobs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    launches = list((tmp_path / "results" / "tiny").iterdir())
    assert len(launches) == 1
    recs = read_records(launches[0])
    assert sorted((r["variant"], r["seed"]) for r in recs) == [("bn", 0), ("bn", 1), ("plain", 0), ("plain", 1)]
    assert {r["study"] for r in recs} == {"tiny"}
    assert all(r["env"]["torch_threads"] == 1 for r in recs)  # one thread per job
    meta = json.loads((launches[0] / "study.json").read_text())
    assert meta["finished"] and len(meta["jobs"]) == 4 and meta["failed_jobs"] == []
    user = [f"data.root={tiny_data}", "trainer.max_steps=60", "run.eval_every=20", "hydra.launcher.n_jobs=2"]
    assert meta["user_overrides"] == user  # the command, as the user gave it (the report shows it)
    report = (tmp_path / "reports" / "tiny" / "report.md").read_text()
    assert f"- Command: `bnbench study tiny {' '.join(user)}`" in report
    for text in ("`plain`", "`bn`", "speed-up", "BN is faster", "recipe.lr=0.5", "trainer.max_steps=60",
                 "### Contrasts"):
        assert text in report
    assert (tmp_path / "reports" / "tiny" / "accuracy.png").stat().st_size > 1000
    assert (tmp_path / "reports" / "tiny" / "sigmoid_inputs.png").exists()
    # one process, BN or none: nothing to say about processes or normalization batches
    assert "Processes and batches" not in report and not (tmp_path / "reports" / "tiny" / "norm_batch.png").exists()
    # W&B: one offline run per job, grouped by the study, typed by the variant, each finished, and
    # the report's run (what it holds: tests/test_wandb_file.py)
    runs = [summary_and_run(p) for p in (tmp_path / "outputs").rglob("offline-run-*/*.wandb")]
    assert sorted(run["job_type"] for _, run in runs) == ["bn", "bn", "plain", "plain", "report"]
    assert {run["group"] for _, run in runs} == {"tiny"} and {run["exit_code"] for _, run in runs} == {0}
    # the report is a pure function of the records: rebuilding gives the same text
    again = run_cli("report", "tiny", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "reports" / "tiny" / "report.md").read_text() == report
    # ... and so is a rebuild from the report folder alone (its records.jsonl.gz and study.json),
    # moved elsewhere, results deleted: the same report, the same archive bytes
    archive = (tmp_path / "reports" / "tiny" / "records.jsonl.gz").read_bytes()
    shutil.copytree(tmp_path / "reports" / "tiny", tmp_path / "copy")
    shutil.move(tmp_path / "results", tmp_path / "results_away")
    alone = run_cli("report", str(tmp_path / "copy"), cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert (tmp_path / "copy" / "report.md").read_text() == report
    assert (tmp_path / "copy" / "records.jsonl.gz").read_bytes() == archive
    assert (tmp_path / "copy" / "runs.csv").read_text() == (tmp_path / "reports" / "tiny" / "runs.csv").read_text()
    shutil.move(tmp_path / "results_away", tmp_path / "results")
    # records from a checkout with uncommitted changes: the report says so at the top
    from bnbench.results.archive import read_archive, write_archive

    meta, recs_copy = read_archive(tmp_path / "copy")
    for r in recs_copy:
        r["env"]["git"]["dirty"] = r["seed"] == 0
    write_archive(tmp_path / "copy", meta, recs_copy)
    assert run_cli("report", str(tmp_path / "copy"), cwd=tmp_path).returncode == 0
    top = (tmp_path / "copy" / "report.md").read_text().split("\n## ")[0]
    assert "**Made from uncommitted code**: 2 of 4 runs" in top
    # a launch whose study command never finished says so, and how many of its runs it holds
    meta["finished"] = None
    (launches[0] / "study.json").write_text(json.dumps(meta))
    for run_dir in launches[0].glob("bn_s*"):
        shutil.rmtree(run_dir)
    assert run_cli("report", "tiny", cwd=tmp_path).returncode == 0
    partial = (tmp_path / "reports" / "tiny" / "report.md").read_text()
    assert "2 of 4 planned runs have records" in partial
    assert "`bnbench restore` this report's folder and run the command it prints" in partial  # how to finish it
    assert "| `bn` | 0 | no record yet |" in partial and "– (no runs yet)" in partial
    # the same command with that launch runs only the missing jobs, in new output folders
    launch = launches[0].name
    resumed = run_cli("study", str(study), f"data.root={tiny_data}", "trainer.max_steps=60", "run.eval_every=20",
                      "hydra.launcher.n_jobs=2", f"study.launch={launch}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "2 to run, 2 done before" in resumed.stdout + resumed.stderr
    again = read_records(launches[0])
    assert sorted((r["variant"], r["seed"]) for r in again) == [("bn", 0), ("bn", 1), ("plain", 0), ("plain", 1)]
    assert {r["run_id"] for r in again} == {r["run_id"] for r in recs}  # same config and code: same ids
    meta = json.loads((launches[0] / "study.json").read_text())
    assert meta["finished"] and len(meta["skipped_jobs"]) == 2 and len(meta["resumed"]) == 1
    assert sorted(p.name for p in (tmp_path / "outputs" / "tiny" / launch).iterdir() if p.name.isdigit()) == [
        "0", "1", "2", "3", "4", "5"]
    assert "2 run(s) kept from earlier attempts" in (tmp_path / "reports" / "tiny" / "report.md").read_text()
    # a launch holding another commit's runs is refused before anything runs
    rec_path = next(launches[0].glob("plain_s0_*")) / "record.json"
    rec = json.loads(rec_path.read_text())
    rec["env"]["git"]["sha"] = "0123456789abcdef"
    rec_path.write_text(json.dumps(rec))
    refused = run_cli("study", str(study), f"data.root={tiny_data}", "trainer.max_steps=60", f"study.launch={launch}",
                      cwd=tmp_path)
    assert refused.returncode != 0
    assert "holds runs of commit 0123456789" in refused.stderr and "new study.launch" in refused.stderr


def test_an_interrupted_run_leaves_no_record(tiny_data, tmp_path, monkeypatch):
    """Ctrl-C (Lightning turns it into SystemExit): nothing half-written in the results."""
    from bnbench.system import Classifier
    from bnbench.train import run

    def interrupted(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(Classifier, "training_step", interrupted)
    cfg = compose([f"data.root={tiny_data}", "logger=none", f"paths.results={tmp_path}", "trainer.max_steps=5"])
    handler = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT while it shuts down
    try:
        with pytest.raises((SystemExit, KeyboardInterrupt)):
            run(cfg)
    finally:
        signal.signal(signal.SIGINT, handler)
    assert not records_under(tmp_path)


def test_ctrl_c_ends_a_study_and_every_process_it_started_and_says_how_to_finish_the_launch(tiny_data, tmp_path):
    """Ctrl-C in the terminal (SIGINT to the whole process group: bnbench, joblib's workers, W&B's
    service processes): all of them end, nothing half-written is left in the results, and instead
    of a traceback one line gives the command that finishes the launch; exit status 130."""
    import os
    import shlex
    import subprocess
    import sys
    import time

    overrides = [f"data.root={tiny_data}", "trainer.max_steps=100000", "hydra.sweeper.seeds=[0]"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    log = tmp_path / "terminal.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bnbench.cli", "study", "paper_mnist", *overrides], cwd=tmp_path,
                                env={**env, "WANDB_MODE": "offline"}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True,  # its own process group, as a terminal's job
                                # as a terminal's foreground job: SIGINT not ignored (it is inherited ignored
                                # when the tests run in the background of a non-interactive shell)
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while "/100000 " not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)  # until the first progress line: the jobs train
        assert proc.poll() is None and "/100000 " in log.read_text(), log.read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
        for _ in range(150):  # and every process of the group is gone (W&B's, joblib's)
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail("processes of the study were left running after Ctrl-C")
    finally:
        if proc.poll() is None or subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).returncode == 0:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert "Traceback" not in text
    (launch,) = [p.parent for p in (tmp_path / "results" / "paper_mnist").glob("*/study.json")]  # not checkpoints/
    last = text.strip().splitlines()[-1]
    assert last.startswith("bnbench: interrupted; to finish the launch")
    assert shlex.split(last.split(": ", 2)[2]) == ["bnbench", "study", "paper_mnist", *overrides,
                                                  f"study.launch={launch.name}"]
    for record in records_under(launch):  # runs done before the interrupt, whole
        assert json.loads(record.read_text())["status"] == "completed"
    assert not [p for p in launch.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]  # no half-written file


def test_record_measures_how_often_pairs_meet_again(tiny_data, tmp_path):
    from bnbench.train import run

    rates = {}
    for mode in ("shard", "global"):
        cfg = compose([f"data.root={tiny_data}", "logger=none", f"paths.results={tmp_path / mode}", f"shuffle={mode}",
                       "data.num_shards=6", "recipe.batch_size=20", "trainer.max_steps=4", "run.eval_every=2"])
        rates[mode] = run(cfg)["co_batch_rate"]
    assert rates["shard"] == 1.0 and rates["global"] < 0.1


FAILING_MODEL = '''
from bnbench.models.mlp import MLP


class FailingMLP(MLP):
    """The paper's MLP, except that its sixth training forward pass raises."""

    calls = 0

    def forward(self, x):
        if self.training:
            FailingMLP.calls += 1
            if FailingMLP.calls > 5:
                raise RuntimeError("injected failure")
        return super().forward(x)
'''


def test_a_failing_job_does_not_stop_the_study_and_the_study_exits_1(tiny_data, tmp_path):
    """A user model plugged in by _target_ fails mid-run: its record says failed, the other job
    completes, the report is written, and `bnbench study` exits 1 naming the failure."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "failing_model.py").write_text(FAILING_MODEL)
    study = tmp_path / "mixed.yaml"
    study.write_text("seeds: [0]\nvariants:\n  ok: [experiment=mnist_bn]\n"
                     "  broken: [experiment=mnist_bn, model._target_=failing_model.FailingMLP]\nreference: ok\n")
    proc = run_cli("study", str(study), f"data.root={tiny_data}", "logger=none", "trainer.max_steps=30",
                   "run.eval_every=10", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "plugins")})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 2 jobs failed" in proc.stderr
    statuses = {json.loads(p.read_text())["variant"]: json.loads(p.read_text())["status"]
                for p in records_under(tmp_path / "results")}
    assert statuses == {"ok": "completed", "broken": "failed"}
    assert "1 failed" in (tmp_path / "reports" / "mixed" / "report.md").read_text()


@pytest.mark.slow  # ~11 s; submitit runs for real in make test-slurm (CI)
def test_study_with_hydras_submitit_local_launcher(tiny_data, tmp_path):
    """The cluster path minus the cluster: submitit pickles the task and config and runs each
    job in its own process. Outputs of the launch sit together under outputs/<study>/<launch>."""
    study = tmp_path / "sub.yaml"
    study.write_text("seeds: [0]\nvariants:\n  plain: [experiment=mnist_baseline]\n  bn: [experiment=mnist_bn]\n"
                     "reference: plain\n")
    proc = run_cli("study", str(study), "hydra/launcher=submitit_local", f"data.root={tiny_data}", "logger=none",
                   "trainer.max_steps=20", "run.eval_every=10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(records_under(tmp_path / "results")) == 2
    (launch,) = (tmp_path / "outputs" / "sub").iterdir()
    assert (launch / "multirun.yaml").exists() and (launch / ".submitit").is_dir()
    report = (tmp_path / "reports" / "sub" / "report.md").read_text()
    assert "bnbench study sub hydra/launcher=submitit_local" in report


def test_classifier_fast_setattr_keeps_module_semantics(tiny_data):
    """The Classifier's __setattr__ fast path (plain attributes that exist) changes nothing else."""
    from torch import nn

    from bnbench.train import build

    system = build(compose([f"data.root={tiny_data}", "logger=none"])).system
    system.check_every = 5  # an existing plain attribute: the fast path
    assert system.check_every == 5 and system.__dict__["check_every"] == 5
    system.extra = nn.Linear(2, 2)  # a new module still registers
    assert dict(system.named_children())["extra"] is system.extra
    system.model = nn.Linear(3, 3)  # a registered module is replaced, not shadowed
    assert dict(system.named_children())["model"] is system.model and "model" not in system.__dict__
    system.register_buffer("buf", torch.zeros(1))
    system.buf = torch.ones(1)  # a buffer stays a buffer
    assert torch.equal(dict(system.named_buffers())["buf"], torch.ones(1)) and "buf" not in system.__dict__


def test_git_state_ignores_generated_reports(tmp_path):
    """A record's `dirty` flag is about code: bnbench's own reports/ output does not count."""
    import subprocess

    from bnbench.results.env import git_state

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "report.md").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "init")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "reports" / "report.md").write_text("b\n")
    git_state.cache_clear()
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    git_state.cache_clear()
    assert git_state(tmp_path)["dirty"] is True
    git_state.cache_clear()
