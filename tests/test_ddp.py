"""Multi-process runs (trainer=ddp, gloo on CPU): one job = one run = one record, exactly-once
evaluation, batch semantics, determinism across processes, and Hydra multiruns.

BN statistics across processes (norm.stats) are tested layer by layer in test_bn_stats.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bnbench.data.in_memory import IDXDataModule
from bnbench.data.ranks import eval_block, rank_order
from bnbench.parallel import plan_processes
from conftest import compose, make_idx_dataset, records_under, run_cli
from wandb_log import summary_and_run

# 201 test and 301 validation examples: not divisible by 2 processes, so a padding sampler would
# count one twice
N_TEST, N_VAL = 201, 301
DDP = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "experiment=mnist_bn", f"data.val_size={N_VAL}"]


def counted_once(acc: float, n: int) -> bool:
    """An accuracy over n examples each counted once: a multiple of 1/n, not of 1/(n + 1)."""
    return abs(acc * n - round(acc * n)) < 1e-3


@pytest.fixture(scope="module")
def odd_data(tmp_path_factory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("odd_idx"), n_train=600, n_test=N_TEST, n_val=N_VAL, seed=1)


def only_record(root: Path) -> dict:
    paths = records_under(root)
    assert len(paths) == 1, paths
    return json.loads(paths[0].read_text())


def curves_of(root: Path) -> dict:
    return json.loads((records_under(root)[0].parent / "curves.json").read_text())


# --- how the data is shared out ----------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [10, 201, 2000])
def test_every_held_out_example_is_evaluated_exactly_once(n, world):
    blocks = [eval_block(n, r, world) for r in range(world)]
    covered = torch.cat([torch.arange(*b) for b in blocks])
    assert covered.tolist() == list(range(n))
    assert max(b[1] - b[0] for b in blocks) - min(b[1] - b[0] for b in blocks) <= 1


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_share_each_global_batch_and_together_see_what_one_process_sees(world):
    order = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    b = 8  # global batch
    slices = [rank_order(order, b, r, world).view(-1, b // world) for r in range(world)]
    together = torch.cat(slices, dim=1)  # step k: every rank's slice, rank by rank
    assert torch.equal(together, order[: 103 // b * b].view(-1, b))


def test_data_module_gives_each_rank_its_slice_and_its_block(odd_data):
    def loaders(rank, world):
        dm = IDXDataModule("mnist", str(odd_data), batch_size=20, eval_batch_size=50, seed=3, val_size=N_VAL)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=world, strategy=SimpleNamespace(
            root_device=torch.device("cpu")))
        return list(dm.train_dataloader()), [list(loader) for loader in dm.val_dataloader()]

    (train1, eval1), ranks = loaders(0, 1), [loaders(r, 2) for r in range(2)]
    assert len(ranks[0][0]) == len(ranks[1][0]) == len(train1) == 30
    for step, (x, y) in enumerate(train1):  # the global batch = rank 0's slice, then rank 1's
        assert ranks[0][0][step][0].shape[0] == 10
        assert torch.equal(torch.cat([ranks[0][0][step][1], ranks[1][0][step][1]]), y)
    for k, n in enumerate((N_VAL, N_TEST)):  # validation, then test: each in blocks, each example once
        images = torch.cat([x for x, _ in eval1[k]])
        assert len(images) == n
        assert torch.equal(torch.cat([x for r in ranks for x, _ in r[1][k]]), images)


# --- configuration ------------------------------------------------------------------------------


def test_ddp_config_plans_two_spawned_processes():
    cfg = compose(DDP)
    plan = plan_processes(cfg)
    assert (plan.mode, plan.world_size, plan.rank, plan.ddp) == ("spawn", 2, 0, True)
    assert plan_processes(compose([])).mode == "single"


@pytest.mark.parametrize("overrides, words", [
    (["+trainer.strategy=ddp_spawn", "trainer.devices=2"], ["trainer.strategy=ddp_spawn", "trainer=ddp"]),
    ([*DDP, "recipe.batch_size=61"], ["data.batch_size=61", "not divisible"]),
    ([*DDP, "trainer.devices=0"], ["trainer.devices"]),
    ([*DDP, "trainer.num_nodes=2"], ["trainer.num_nodes=2", "hydra/launcher=slurm"]),
])
def test_bad_multi_process_settings_are_one_line_errors(tiny_data, tmp_path, overrides, words):
    proc = run_cli("train", f"data.root={tiny_data}", "logger=none", *overrides, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnbench: error:"), proc.stderr
    for word in words:
        assert word in lines[0]
    assert not records_under(tmp_path) and not (tmp_path / "outputs").exists()


def test_a_rank_that_dies_is_named_with_its_signal_and_its_last_lines(capfd):
    """A worker killed by a C++ abort (gloo's way of dying) fails the job with one message that
    names the rank, the signal and what it printed last, and the other rank is stopped."""
    import subprocess
    import sys

    from bnbench.parallel import StderrTail, exit_status, wait_all

    dying = "import os, sys; print('terminate called: Connection closed by peer', file=sys.stderr); os.abort()"
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
             subprocess.Popen([sys.executable, "-c", dying], stderr=subprocess.PIPE)]
    tail = StderrTail(procs[1])
    rank, code = wait_all(procs, grace_s=0.5)
    assert (rank, exit_status(code)) == (1, "signal SIGABRT")
    assert procs[0].wait(timeout=10) == -9  # stopped after the grace period, not left waiting
    assert "Connection closed by peer" in tail.last_lines()
    assert "Connection closed by peer" in capfd.readouterr().err  # also passed through as it came
    assert exit_status(2) == "status 2"


def test_a_finished_one_process_ddp_run_leaves_no_process_group(tiny_data, tmp_path, monkeypatch):
    """Ranks end their group together (barrier, then destroy) so no rank's exit breaks a link
    another still uses; a reused process (joblib) then starts its next job without a stale group."""
    import torch.distributed as dist

    from bnbench.parallel import RunContext
    from bnbench.train import train_process

    cfg = compose([f"data.root={tiny_data}", "logger=none", "+trainer.strategy=ddp", "trainer.max_steps=4",
                   "run.eval_every=2", f"paths.results={tmp_path}/results"])
    plan = plan_processes(cfg)
    assert plan.ddp and plan.world_size == 1
    record = train_process(cfg, RunContext("t", str(tmp_path / "out")), plan)
    assert record["status"] == "completed" and not dist.is_initialized()


# --- real 2-process runs ------------------------------------------------------------------------


def test_two_process_run_is_one_run_with_one_record_and_is_deterministic(odd_data, tmp_path):
    args = ["train", f"data.root={odd_data}", *DDP, "trainer.max_steps=30", "run.eval_every=10",
            "run.targets=[0.3,0.99]", "norm.impl=bnbench", "norm.stats=global"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = run_cli(*args, cwd=tmp_path / "a", timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    rec = only_record(tmp_path / "a" / "results")
    assert rec["status"] == "completed" and rec["steps"] == 30  # optimizer steps
    assert (rec["devices"], rec["batch_per_device"], rec["global_batch"], rec["norm_batch"]) == (2, 30, 60, 60)
    assert rec["launcher"] == "spawn"
    assert (rec["val_size"], rec["test_size"], rec["train_size"]) == (N_VAL, N_TEST, 600)
    # every validation and test example counted once: accuracies are multiples of 1/301 and 1/201
    curves = curves_of(tmp_path / "a" / "results")
    assert curves["step"] == [10, 20, 30]
    # (the test set at the evaluations run.test_at=best chose: the first and the last at least,
    # the same on both ranks, or the ranks would have waited on each other)
    assert curves["test_acc"][0] is not None and curves["test_acc"][-1] is not None
    for key, n in (("acc", N_VAL), ("test_acc", N_TEST)):
        measured = [acc for acc in curves[key] if acc is not None]
        assert all(counted_once(acc, n) for acc in measured), (key, curves[key])
        assert any(0 < acc < 1 for acc in measured), (key, curves[key])
    # one W&B run, from rank 0, holding the record's figures; one output folder
    runs = list((tmp_path / "a" / "outputs").rglob("offline-run-*/*.wandb"))
    assert len(runs) == 1, runs
    summary, run = summary_and_run(runs[0])
    assert summary["best_acc"] == pytest.approx(rec["best_acc"]) and run["exit_code"] == 0
    assert summary["test_acc_at_best"] == pytest.approx(rec["test_acc_at_best"])
    assert len(list((tmp_path / "a" / "outputs" / "adhoc").iterdir())) == 1
    assert not (tmp_path / "a" / "multirun").exists() and not (tmp_path / "a" / "lightning_logs").exists()
    # the same command again: the same record (determinism across processes)
    second = run_cli(*args, cwd=tmp_path / "b", timeout=240)
    assert second.returncode == 0, second.stderr[-3000:]
    again = only_record(tmp_path / "b" / "results")
    for key in ("run_id", "steps", "best_acc", "best_step", "final_acc", "final_test_acc", "test_acc_at_best",
                "steps_to_target"):
        assert again[key] == rec[key], key
    assert curves_of(tmp_path / "b" / "results")["loss"] == curves["loss"]


def test_multirun_of_two_process_jobs_gives_one_record_and_one_wandb_run_per_job(odd_data, tmp_path):
    """Lightning's own ddp launcher would re-run the sweep in every child (PITFALLS.md)."""
    proc = run_cli("train", "-m", f"data.root={odd_data}", *DDP, "trainer.max_steps=20", "run.eval_every=10",
                   "norm.inference=population", "norm.population_batches=3", "seed=0,1", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(p.read_text()) for p in records_under(tmp_path / "results")]
    assert sorted(r["seed"] for r in recs) == [0, 1] and {r["devices"] for r in recs} == {2}
    for r in recs:  # Alg. 2 per rank, averaged over ranks, then evaluated once over all 301 and 201 examples
        assert r["population_batches"] == 3 and r["final_acc_ema"] is not None and r["final_test_acc_ema"] is not None
        assert counted_once(r["final_acc"], N_VAL) and counted_once(r["final_test_acc"], N_TEST)
    runs = list(tmp_path.rglob("offline-run-*/*.wandb"))
    assert len(runs) == 2, runs
    assert sorted(summary_and_run(p)[0]["best_acc"] for p in runs) == pytest.approx(sorted(r["best_acc"] for r in recs))
    # Hydra's sweep folder holds the two jobs and nothing else; no stray run folders
    sweeps = list((tmp_path / "outputs" / "adhoc").iterdir())
    assert len(sweeps) == 1
    assert sorted(p.name for p in sweeps[0].iterdir() if p.is_dir()) == ["0", "1"]
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize("launcher", ["local", pytest.param("submitit_local", marks=pytest.mark.slow)])  # submitit: make test-slurm
def test_study_with_a_two_process_job_gives_one_record_per_job(odd_data, tmp_path, launcher):
    """Under `bnbench study` (joblib's reused workers, or submitit's process per job) a
    2-process job is one run: one record, one W&B run."""
    study = tmp_path / "mixed.yaml"
    study.write_text("seeds: [0]\nvariants:\n  one: [experiment=mnist_bn]\n"
                     "  two: [experiment=mnist_bn, trainer=ddp, trainer.devices=2, trainer.accelerator=cpu]\n"
                     "reference: one\n")
    proc = run_cli("study", str(study), f"hydra/launcher={launcher}", f"data.root={odd_data}", f"data.val_size={N_VAL}",
                   "trainer.max_steps=20", "run.eval_every=10", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(p.read_text()) for p in records_under(tmp_path / "results")]
    assert sorted((r["variant"], r["devices"]) for r in recs) == [("one", 1), ("two", 2)]
    assert len(list(tmp_path.rglob("offline-run-*/*.wandb"))) == 3  # and the report's run
    report = (tmp_path / "reports" / "mixed" / "report.md").read_text()
    assert "Processes and batches" in report and "| `two` | 2 |" in report


# --- ranks started by a scheduler ---------------------------------------------------------------


def test_slurm_tasks_are_the_ranks_and_lightning_does_not_requeue(monkeypatch):
    """Under SLURM with one task per device the tasks are the ranks (Lightning spawns nothing),
    and Lightning's own requeue is off: submitit requeues (exactly one component)."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    from bnbench.errors import ConfigError
    from bnbench.parallel import trainer_arguments

    for key, value in {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "7",
                       "SLURM_NODELIST": "node1", "SLURM_JOB_NAME": "bnbench"}.items():
        monkeypatch.setenv(key, value)
    plan = plan_processes(compose(DDP))
    assert (plan.mode, plan.rank, plan.world_size) == ("slurm", 1, 2)
    env = trainer_arguments(plan)["strategy"].cluster_environment
    assert isinstance(env, SLURMEnvironment) and not env.auto_requeue
    with pytest.raises(ConfigError, match="SLURM started 2 tasks"):
        plan_processes(compose([*DDP, "trainer.devices=3"]))
    monkeypatch.setenv("SLURM_NTASKS", "1"), monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "1")  # one task: a one-process run, still no Lightning requeue
    (plugin,) = trainer_arguments(plan_processes(compose([])))["plugins"]
    assert isinstance(plugin, SLURMEnvironment) and not plugin.auto_requeue


@pytest.mark.parametrize("submitit", [True, False], ids=["under_submitit", "plain"])
def test_under_submitit_the_sigterm_handler_stops_the_run_without_a_collective_call(tiny_data, tmp_path, monkeypatch,
                                                                                     submitit):
    """SLURM's SIGTERM after `scontrol requeue` reaches rank 0 inside submitit's requeue handler.
    Lightning's own SIGTERM handler broadcasts from there in a multi-process run, and waits on a
    rank that has left; under submitit (its job script exports SUBMITIT_EXECUTOR) bnbench's
    handler only sets the flag and calls the handler from before the fit (submitit's). Either way
    the run stops at its next step (Lightning's SIGTERMException, no record written).
    The handler is called as in a 2-process run: process group up, world size 2."""
    import os
    import signal

    import pytorch_lightning as pl
    import torch.distributed as dist

    import bnbench.train
    from bnbench.parallel import RunContext

    received, collectives = [], []

    def submitit_handler(signum, frame):  # submitit's SIGTERM handler's stand-in: it logs and goes on
        received.append(signum)

    class TermAtStep2(pl.Callback):  # SLURM's SIGTERM, sent mid-run
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 2:
                with monkeypatch.context() as m:
                    m.setattr(dist, "is_initialized", lambda: True)
                    m.setattr(type(trainer), "world_size", property(lambda self: 2))
                    m.setattr(dist, "broadcast", lambda *a, **k: collectives.append("broadcast"))
                    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line

    previous = signal.signal(signal.SIGTERM, submitit_handler)
    monkeypatch.setattr(bnbench.train, "step_faults", TermAtStep2)
    if submitit:
        monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    else:
        monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    cfg = compose([f"data.root={tiny_data}", "logger=none", "trainer.max_steps=6", "run.eval_every=3",
                   f"paths.results={tmp_path}/results", "run.checkpoint.every_s=0"])
    try:
        with pytest.raises(SystemExit):  # Lightning's SIGTERMException at the next step
            bnbench.train.train_process(cfg, RunContext("t", str(tmp_path / "out")), plan_processes(cfg))
        assert received == [signal.SIGTERM]  # the handler from before the fit ran, once
        assert collectives == ([] if submitit else ["broadcast"])  # Lightning's broadcasts inside the handler
        assert records_under(tmp_path / "results") == []  # interrupted: no record
        assert signal.getsignal(signal.SIGTERM) is submitit_handler  # in place again after the fit
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("trainer, job_num, gpus, expected", [
    ({"devices": 1, "accelerator": "auto"}, 5, 4, {"devices": [1]}),  # job 5 on GPU 5 mod 4
    ({"devices": 1, "accelerator": "gpu"}, 0, 2, {"devices": [0]}),
    ({"devices": "1", "accelerator": "cuda"}, 3, 2, {"devices": [1]}),
    ({"devices": 1, "accelerator": "auto"}, None, 4, {}),  # a single run: Lightning's choice
    ({"devices": 1, "accelerator": "auto"}, 5, 1, {}),  # one GPU: nothing to choose
    ({"devices": 1, "accelerator": "auto"}, 5, 0, {}),  # no GPU
    ({"devices": 1, "accelerator": "cpu"}, 5, 4, {}),
    ({"devices": 2, "accelerator": "gpu"}, 5, 4, {}),  # a multi-device job places itself
    ({"devices": [3], "accelerator": "gpu"}, 5, 4, {}),  # an explicit device list is the user's
])
def test_sweep_jobs_are_dealt_over_the_gpus(trainer, job_num, gpus, expected):
    from omegaconf import OmegaConf

    from bnbench.parallel import gpu_placement

    assert gpu_placement(OmegaConf.create(trainer), job_num, gpus) == expected


def test_without_gpus_a_sweep_job_is_not_placed():
    from omegaconf import OmegaConf

    from bnbench.parallel import gpu_placement

    assert gpu_placement(OmegaConf.create({"devices": 1, "accelerator": "auto"}), 3) == (
        {} if torch.cuda.device_count() < 2 else {"devices": [3 % torch.cuda.device_count()]})
