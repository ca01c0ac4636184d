"""Exact resume (bnbench/checkpoint.py): a run killed with SIGKILL at any moment and started again
with the same command ends with the same record, curves and weights as an uninterrupted run of
the same seed, bit for bit on CPU.

Kills come from inside (bnbench/faults.py: BNBENCH_FAULT names the point, the process sends
itself SIGKILL there, as the kernel's OOM killer would) and from outside (the test kills the
process while it trains). The data: 600 training examples, batch 60 = 10 batches an epoch;
evaluations (and checkpoints, run.checkpoint.every_s=0) every 7 steps, so checkpoints fall
inside epochs and at their ends; 50 steps, the last one not an evaluation step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import make_idx_dataset, records_under, run_cli

STEPS = ["trainer.max_steps=50", "run.eval_every=7"]
RUN = ["train", "experiment=mnist_bn", *STEPS, "run.checkpoint.every_s=0", "run.checkpoint.keep=true", "logger=none"]
# What legitimately differs between two attempts: clocks, the launch folder, the resume itself.
UNSTABLE = {"started", "wall_s", "train_s", "eval_s", "train_cpu_s", "time_to_target", "output_dir", "launch", "resumed_at", "config"}
KILLED = -signal.SIGKILL


def outcome(root: Path) -> tuple[dict, dict, dict]:
    """(record, curves, final weights) of the one completed run under `root`."""
    (path,) = [p for p in records_under(root) if json.loads(p.read_text())["status"] == "completed"]
    record = json.loads(path.read_text())
    curves = json.loads((path.parent / "curves.json").read_text())
    weights = torch.load(path.parent / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return record, curves, weights


def assert_same_run(a: Path, b: Path) -> dict:
    """The runs under a and b are the same run: record (but clocks), curves, weights, bit for bit."""
    (ra, ca, wa), (rb, cb, wb) = outcome(a), outcome(b)
    assert {k: v for k, v in ra.items() if k not in UNSTABLE} == {k: v for k, v in rb.items() if k not in UNSTABLE}
    assert ra["config"]["trainer"] == rb["config"]["trainer"]
    for key in ("step", "acc", "test_acc", "loss"):
        assert ca[key] == cb[key], key
    assert ca["probe"] == cb["probe"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    return rb


def killed_then_resumed(args: list[str], cwd: Path, *faults: str) -> subprocess.CompletedProcess:
    """Run `args` once per fault, each attempt killed at its fault, then once more to the end."""
    cwd.mkdir(parents=True, exist_ok=True)
    for fault in faults:
        proc = run_cli(*args, cwd=cwd, env={"BNBENCH_FAULT": fault})
        assert proc.returncode in (KILLED, 1), proc.stderr[-3000:]  # 1: a rank of a multi-process job
        assert not records_under(cwd), f"an attempt killed at {fault} left a record"
    return run_cli(*args, cwd=cwd)


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    proc = run_cli(*RUN, f"data.root={tiny_data}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd


# The default suite runs the first of these; `make test-faults` (or -m slow) all six.
@pytest.mark.parametrize("faults, resumed_at", [
    (["step-24"], [21]),                        # between checkpoints, inside an epoch
    pytest.param(["step-32"], [28], marks=pytest.mark.slow),  # 2 batches short of an epoch's end
    pytest.param(["checkpoint-written@3"], [14], marks=pytest.mark.slow),  # during the 3rd checkpoint's write: the 2nd is used
    pytest.param(["checkpoint-saved@5"], [35], marks=pytest.mark.slow),  # just after a checkpoint
    pytest.param(["trained"], [49], marks=pytest.mark.slow),  # training over, the record not yet written
    pytest.param(["step-24", "step-45"], [21, 42], marks=pytest.mark.slow),  # killed twice
])
def test_a_killed_run_resumes_to_the_same_record_curves_and_weights(tiny_data, tmp_path, uninterrupted, faults,
                                                                     resumed_at):
    proc = killed_then_resumed([*RUN, f"data.root={tiny_data}"], tmp_path, *faults)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from step" in proc.stdout + proc.stderr
    record = assert_same_run(uninterrupted, tmp_path)
    assert record["resumed_at"] == resumed_at
    assert not any((tmp_path / "results" / "adhoc" / "checkpoints").iterdir())  # finished: checkpoints gone


@pytest.mark.slow  # 10-30 s; make test-faults runs it
def test_a_run_killed_from_outside_while_it_trains_resumes_exactly(tiny_data, tmp_path):
    """SIGKILL from another process, at whatever moment the run has reached once it has a checkpoint.
    Longer run (400 steps) so the kill lands in training, not after it."""
    args = ["train", "experiment=mnist_bn", "trainer.max_steps=400", "run.eval_every=7", "run.checkpoint.every_s=0",
            "run.checkpoint.keep=true", "logger=none", f"data.root={tiny_data}"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    assert run_cli(*args, cwd=whole).returncode == 0
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "bnbench.cli", *args], cwd=cut, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = cut / "results" / "adhoc" / "checkpoints"
    deadline = time.monotonic() + 120
    while not list(folder.glob("*/last.ckpt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == KILLED, "the run ended before it could be killed: lengthen it"
    resumed = run_cli(*args, cwd=cut)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = assert_same_run(whole, cut)
    assert len(record["resumed_at"]) == 1 and 0 < record["resumed_at"][0] < 400


@pytest.mark.slow  # 10-30 s; make test-faults runs it
def test_dropout_and_distortions_draw_the_same_random_numbers_after_a_resume(tmp_path):
    """inception_mini with dropout 0.4 and photometric distortions draws from torch's global
    generator every step: a resume must put it back exactly (and the loaders must not draw from it).
    A validation set of 200 (not the default 4,000): inception_mini evaluates slowly on a CPU."""
    data = make_idx_dataset(tmp_path / "data", n_val=200)
    args = ["train", "model=inception_mini", "norm=batch", "trainer.max_steps=24", "run.eval_every=7",
            "run.checkpoint.every_s=0", "run.checkpoint.keep=true", "logger=none", f"data.root={data}",
            "data.val_size=200", "run.probe_batch=50", "data.eval_batch_size=100"]
    whole = tmp_path / "whole"
    whole.mkdir()
    assert run_cli(*args, cwd=whole).returncode == 0
    proc = killed_then_resumed(args, tmp_path / "cut", "step-17")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert assert_same_run(whole, tmp_path / "cut")["resumed_at"] == [14]


@pytest.mark.slow  # ~40 s; the 2-task SLURM requeue test (make test-slurm, in CI) resumes a DDP run too
def test_a_two_process_run_resumes_when_one_rank_is_killed(tiny_data, tmp_path):
    """Rank 1 dies (SIGKILL) mid-run: the job fails naming it; started again, the 2-process run
    resumes every rank's generators and data position and ends as the uninterrupted one."""
    args = [*RUN, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", f"data.root={tiny_data}"]
    whole = tmp_path / "whole"
    whole.mkdir()
    assert run_cli(*args, cwd=whole).returncode == 0
    cut = tmp_path / "cut"
    cut.mkdir()
    failed = run_cli(*args, cwd=cut, env={"BNBENCH_FAULT": "step-24:rank1"})
    assert failed.returncode == 1 and "rank 1 of 2 exited with signal SIGKILL" in failed.stderr
    # rank 0, left alone in a collective, fails too: a failed record, its checkpoint kept
    assert [json.loads(p.read_text())["status"] for p in records_under(cut)] in ([], ["failed"])
    proc = run_cli(*args, cwd=cut)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert assert_same_run(whole, cut)["resumed_at"] == [21]


@pytest.mark.slow  # 10-30 s; make test-faults runs it
def test_a_study_killed_mid_job_is_finished_by_relaunching_it(tiny_data, tmp_path):
    """The job's worker process is killed (joblib); relaunching the launch runs the job again and
    it resumes from its checkpoint, ending as the uninterrupted study's run."""
    study = tmp_path / "one.yaml"
    study.write_text("seeds: [0]\nvariants:\n  bn: [experiment=mnist_bn]\nreference: bn\n")
    args = ["study", str(study), f"data.root={tiny_data}", *STEPS, "run.checkpoint.every_s=0",
            "run.checkpoint.keep=true", "logger=none", "study.launch=L"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    assert run_cli(*args, cwd=whole).returncode == 0
    killed = run_cli(*args, cwd=cut, env={"BNBENCH_FAULT": "step-24"})
    assert killed.returncode != 0 and not records_under(cut)
    relaunched = run_cli(*args, cwd=cut)
    assert relaunched.returncode == 0, relaunched.stderr[-3000:]
    assert assert_same_run(whole / "results", cut / "results")["resumed_at"] == [21]


@pytest.mark.slow  # 10-30 s; make test-faults runs it
def test_resume_can_be_turned_off_and_checkpoints_can_be_turned_off(tiny_data, tmp_path):
    args = [*RUN, f"data.root={tiny_data}"]
    assert run_cli(*args, cwd=tmp_path, env={"BNBENCH_FAULT": "step-24"}).returncode == KILLED
    fresh = run_cli(*args, "run.resume=false", cwd=tmp_path)
    assert fresh.returncode == 0 and "resuming" not in fresh.stdout + fresh.stderr
    assert json.loads(records_under(tmp_path)[0].read_text())["resumed_at"] == []
    none = tmp_path / "none"
    none.mkdir()
    proc = run_cli(*args, "run.checkpoint.every_s=null", cwd=none, env={"BNBENCH_FAULT": "step-24"})
    assert proc.returncode == KILLED and not (none / "results" / "adhoc" / "checkpoints").exists()


def test_checkpoints_load_with_weights_only(tiny_data, tmp_path):
    """Nothing but tensors, numbers, strings and containers: torch.load(weights_only=True) reads it."""
    from bnbench.checkpoint import read_state

    assert run_cli(*RUN, f"data.root={tiny_data}", cwd=tmp_path, env={"BNBENCH_FAULT": "step-24"}).returncode == KILLED
    (path,) = (tmp_path / "results" / "adhoc" / "checkpoints").glob("*/last.ckpt")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 21
    state = read_state(path)
    assert state["step"] == 21 and len(state["rng"]) == 1 and state["resumed_at"] == []


def test_rng_state_round_trips_every_generator():
    import random

    import numpy as np

    from bnbench.checkpoint import capture_rng, restore_rng

    state = capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2] == again[2]


@pytest.mark.parametrize("batches", [0, 3, 10, 13, 29])
def test_every_training_stream_resumes_at_the_batch_it_was_at(batches):
    """seek(b) on a fresh stream gives what an uninterrupted stream gives from batch b on, for
    each of the three kinds (in-memory IDX, ImageNet-style folders' sampler, synthetic),
    across epoch ends, on rank 1 of 2."""
    from bnbench.data.imagefolder import EpochSampler
    from bnbench.data.in_memory import BatchStream
    from bnbench.data.synthetic import RandomBatches

    def idx_stream():
        return BatchStream(torch.arange(100).float(), torch.arange(100), 10, "within_shard", 4, seed=3, rank=1, world=2)

    def sampler():  # 10 global batches of 10 an epoch; rank 1's 5 examples of each
        return EpochSampler(103, "global", 4, seed=3, batch_size=10, rank=1, world=2)

    def synthetic():
        return RandomBatches((2,), 3, 4, 10, "cpu", seed=3)

    def epochs(stream, n):
        out = []
        for _ in range(n):
            out += [b[0].tolist() if isinstance(b, tuple) and torch.is_tensor(b[0]) else b for b in stream]
        return out

    for make, per_batch in ((idx_stream, 1), (sampler, 5), (synthetic, 1)):
        whole = epochs(make(), 3)
        stream = make()
        stream.seek(batches)
        assert epochs(stream, 3 - batches // 10) == whole[batches * per_batch:], make.__name__


def test_the_resumed_run_continues_the_same_wandb_run(tiny_data, tmp_path):
    """The W&B run id travels in the checkpoint: the killed attempt's offline run and the
    resumed one are the same W&B run (wandb sync puts them together)."""
    args = [*RUN[:-1], "logger=wandb", f"data.root={tiny_data}"]
    assert run_cli(*args, cwd=tmp_path, env={"BNBENCH_FAULT": "step-24"}).returncode == KILLED
    time.sleep(1.1)  # Hydra's output folder is named by the second
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted((tmp_path / "outputs").rglob("offline-run-*"))
    assert len(runs) == 2, runs
    ids = {p.name.rsplit("-", 1)[1] for p in runs}
    assert len(ids) == 1, runs
    assert json.loads(records_under(tmp_path)[0].read_text())["resumed_at"] == [21]
