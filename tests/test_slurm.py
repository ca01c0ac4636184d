"""Studies on a real SLURM cluster: `bnbench study NAME hydra/launcher=slurm`.

Selected with `-m slurm` (the default suite deselects them). `make test-slurm` boots a one-node
cluster on this machine (tests/cluster/slurm.sh), runs these tests and stops it; without a
cluster that answers `sinfo` they skip. About 2 minutes 15 s on 2 cores (the cluster needs >= 2 CPUs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnbench.results.store import read_records
from conftest import records_under, run_cli

pytestmark = pytest.mark.slurm

SLURM_DIR = Path(os.environ.get("BNBENCH_SLURM_DIR", "/tmp/bnbench-slurm"))


def cluster_problem() -> str | None:
    """Why there is no cluster to test on, or None."""
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) on this machine: `make test-slurm` installs and boots a one-node cluster"
    conf = os.environ.get("SLURM_CONF")
    if conf is None and (SLURM_DIR / "slurm.conf").exists():  # tests/cluster/slurm.sh's cluster
        os.environ["SLURM_CONF"] = conf = str(SLURM_DIR / "slurm.conf")
    if conf is not None and not Path(conf).exists():  # sinfo would retry for a minute
        return f"SLURM_CONF={conf} does not exist: `make test-slurm` boots a one-node cluster"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%a %T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20s: no SLURM controller up (`make test-slurm` boots one)"
    if proc.returncode != 0:
        return f"sinfo failed ({' '.join(proc.stderr.split())[:200]}): `make test-slurm` boots a one-node cluster"
    usable = ("idle", "mixed", "allocated", "completing")
    if not any(line.split()[:1] == ["up"] and line.split()[1] in usable for line in proc.stdout.splitlines()):
        return f"no usable node in an up partition (sinfo: {' '.join(proc.stdout.split())})"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster():
    problem = cluster_problem()
    if problem:
        pytest.skip(problem)


def study_file(tmp_path: Path, name: str, variants: dict[str, list[str]], seeds: str = "[0]") -> Path:
    lines = [f"seeds: {seeds}", "variants:", *(f"  {v}: [{', '.join(ov)}]" for v, ov in variants.items()),
             f"reference: {next(iter(variants))}"]
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def job_info(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout


def submitit_dirs(launch_dir: Path) -> list[Path]:
    """outputs/<study>/<launch>/.submitit/<SLURM job id>/, one per job (<array id>_<index> in an array)."""
    return sorted(p for p in (launch_dir / ".submitit").iterdir() if p.is_dir() and re.fullmatch(r"\d+(_\d+)?", p.name))


def job_state(job_id: str, timeout: float = 30) -> str:
    """The job's final state (its tasks may still be exiting when the launcher has every result)."""
    deadline = time.monotonic() + timeout
    while True:
        state = re.search(r"JobState=(\w+)", job_info(job_id)).group(1)
        if state not in ("RUNNING", "COMPLETING") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def test_the_cluster_runs_two_tasks_with_srun_and_a_batch_job(tmp_path):
    proc = subprocess.run(["srun", "-n", "2", "bash", "-c", "echo $SLURM_PROCID/$SLURM_NTASKS"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["0/2", "1/2"]
    out = tmp_path / "batch.out"
    batch = subprocess.run(["sbatch", "--wait", "-n", "2", "-o", str(out), "--wrap",
                            f"srun {sys.executable} -c 'import os; print(os.environ[\"SLURM_PROCID\"])'"],
                           capture_output=True, text=True, timeout=60)
    assert batch.returncode == 0, batch.stderr
    assert sorted(out.read_text().split()) == ["0", "1"]  # the job's tasks run this virtualenv's Python


def test_study_on_slurm_one_task_per_device(tiny_data, tmp_path):
    """A 1-device job and a 2-device DDP job: SLURM jobs of 1 and 2 tasks, one record and one
    W&B offline run each, and the report."""
    from wandb_log import summary_and_run

    study = study_file(tmp_path, "onslurm", {
        "one": ["experiment=mnist_bn"],
        "two": ["experiment=mnist_bn", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"],
    })
    proc = run_cli("study", str(study), "hydra/launcher=slurm", f"data.root={tiny_data}", "trainer.max_steps=40",
                   "run.eval_every=20", cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (launch,) = (tmp_path / "results" / "onslurm").iterdir()
    recs = {r["variant"]: r for r in read_records(launch)}
    assert sorted(recs) == ["one", "two"] and {r["status"] for r in recs.values()} == {"completed"}
    assert recs["one"]["steps"] == recs["two"]["steps"] == 40
    assert recs["two"].get("launcher") == "slurm"  # ranks from SLURM's two tasks, not spawned by bnbench
    # one SLURM job per study job, with as many tasks as the job has devices
    jobs = submitit_dirs(tmp_path / "outputs" / "onslurm" / launch.name)
    tasks = sorted(re.search(r"NumTasks=(\d+)", job_info(d.name)).group(1) for d in jobs)
    assert tasks == ["1", "2"]
    assert sorted(len(list(d.glob("*_result.pkl"))) for d in jobs) == [1, 2]  # every task ran the job
    # W&B: one offline run per job (rank 0 logs), grouped by the study, finished, and the report's run
    runs = [summary_and_run(p) for p in (tmp_path / "outputs").rglob("offline-run-*/*.wandb")]
    assert sorted(run["job_type"] for _, run in runs) == ["one", "report", "two"]
    assert {run["group"] for _, run in runs} == {"onslurm"} and {run["exit_code"] for _, run in runs} == {0}
    report = (tmp_path / "reports" / "onslurm" / "report.md").read_text()
    assert "hydra/launcher=slurm" in report and "`two`" in report


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """`bnbench` in the background, as conftest.run_cli runs it."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "bnbench.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(what: str, predicate, timeout: float, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"bnbench ended (status {proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no {what} after {timeout}s:\n{proc.communicate()[0][-3000:]}")


@pytest.mark.parametrize("devices, steps", [
    ([], 3000),
    (["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"], 1000),  # slower steps: gloo on 2 cores
], ids=["1device", "ddp2"])
def test_a_job_sent_the_requeue_signal_is_requeued_once_and_leaves_one_record(tiny_data, tmp_path, devices, steps):
    """SIGUSR2 to a running job's tasks (what SLURM sends before the time limit, and the recipe
    for a preemption by hand): submitit's handler on rank 0 requeues the job with the same
    config, the interrupted attempt writes no record, the rerun resumes from the interrupted
    attempt's last checkpoint (bnbench/checkpoint.py) and writes the one record."""
    study = study_file(tmp_path, "requeue", {"one": ["experiment=mnist_bn", *devices]})
    proc = start_cli("study", str(study), "hydra/launcher=slurm", f"data.root={tiny_data}", "logger=none",
                     f"trainer.max_steps={steps}", f"run.eval_every={steps // 10}", "run.checkpoint.every_s=0",
                     cwd=tmp_path)
    try:
        outputs = tmp_path / "outputs" / "requeue"
        job_dir = wait_for("a SLURM job", lambda: outputs.exists() and [
            d for launch in outputs.iterdir() if (launch / ".submitit").is_dir() for d in submitit_dirs(launch)],
            60, proc)[0]
        job_id = job_dir.name
        job_log = next(outputs.iterdir()) / "0" / "bnbench.log"
        # the progress line is written at the evaluation, before its checkpoint is saved: wait for the file
        wait_for("a checkpoint", lambda: list((tmp_path / "results" / "requeue" / "checkpoints").glob("*/last.ckpt")),
                 90, proc)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)  # the job's steps: not --batch / --full
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-3000:]
    (record,) = records_under(tmp_path / "results")
    rec = json.loads(record.read_text())
    assert rec["status"] == "completed" and rec["steps"] == steps
    (resumed_at,) = rec["resumed_at"]  # the requeued attempt went on from a checkpoint, not from step 0
    assert resumed_at >= steps // 10 and resumed_at % (steps // 10) == 0
    assert f"resuming from step {resumed_at}" in job_log.read_text()
    assert job_state(job_id) == "COMPLETED"
    assert "Restarts=1 " in job_info(job_id)
    # submitit's own log lines (Hydra's job logging repeats them in its format)
    log = [line for line in (job_dir / f"{job_id}_0_log.out").read_text().splitlines() if line.startswith("submitit ")]
    assert sum("Starting with JobEnvironment" in line for line in log) == 2
    assert sum("this job is preempted" in line for line in log) == 1
    assert sum(f"Requeued job {job_id} " in line for line in log) == 1
    assert sum("Job completed successfully" in line for line in log) == 1
    assert job_log.read_text().count(f"step {steps}/{steps}") == 1  # the rerun ran to the end, once


def test_a_job_killed_without_a_result_fails_alone_and_the_study_goes_on(tiny_data, tmp_path):
    """A job cancelled while it runs leaves no result file: the launch does not wait for it
    forever (squeue tells it the job ended: this cluster keeps no accounting for sacct), it
    counts as a failed job, the other job completes, the report is written, the study exits 1."""
    study = study_file(tmp_path, "killed", {"one": ["experiment=mnist_bn"]}, seeds="[0, 1]")
    proc = start_cli("study", str(study), "hydra/launcher=slurm", f"data.root={tiny_data}", "logger=none",
                     "trainer.max_steps=3000", "run.eval_every=300", cwd=tmp_path)
    try:
        outputs = tmp_path / "outputs" / "killed"
        first = wait_for("a job array", lambda: outputs.exists() and next(
            (d.name for launch in outputs.iterdir() if (launch / ".submitit").is_dir() for d in submitit_dirs(launch)
             if d.name.endswith("_0")), None), 60, proc)  # job #0 (seed 0) of the array
        job_log = next(outputs.iterdir()) / "0" / "bnbench.log"
        wait_for("training progress", lambda: job_log.exists() and "step 300/3000" in job_log.read_text(), 90, proc)
        subprocess.run(["scancel", first], check=True)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out[-3000:]
    assert "1 of 2 jobs failed" in out and f"SLURM job {first} (#0) ended without a result" in out
    assert "state: CANCELLED" in out
    (record,) = records_under(tmp_path / "results")
    rec = json.loads(record.read_text())
    assert rec["seed"] == 1 and rec["status"] == "completed"
    (launch,) = (tmp_path / "results" / "killed").iterdir()
    meta = json.loads((launch / "study.json").read_text())
    assert meta["finished"] and [o for o in meta["failed_jobs"][0] if o.startswith("seed=")] == ["seed=0"]
    assert (tmp_path / "reports" / "killed" / "report.md").exists()
