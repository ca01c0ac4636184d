"""Several optimizer steps per Lightning batch (`run.steps_per_batch`, bnbench/data/groups.py,
bnbench/system.py): the same run, bit for bit, as one step per batch (its record, curves,
weights and W&B history), across epoch boundaries, with dropout and distortions, diverging, with
Alg. 2's population pass, killed and resumed; the progress bar counts steps; auto picks k from the
run's intervals; a k the run cannot take is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bnbench.data.groups import Groups
from bnbench.data.in_memory import BatchStream
from bnbench.errors import ConfigError
from bnbench.parallel import ProcessPlan
from bnbench.train import resolve_steps_per_batch
from conftest import make_idx_dataset, records_under, run_cli
from test_resume import UNSTABLE, assert_same_run, killed_then_resumed
from wandb_log import history

# 600 training examples in batches of 60: 10 batches an epoch. Auto: gcd(120, 24, 12) = 12 steps
# a Lightning batch, so groups straddle epoch boundaries.
GROUPED = ["trainer.max_steps=120", "run.eval_every=24", "trainer.log_every_n_steps=12"]


def run_folder(root: Path) -> Path:
    (path,) = records_under(root / "results")
    return path.parent


def lightning_batches(root: Path) -> int:
    """Batches Lightning's loop had gone through at the run's last checkpoint (its loop state;
    run.checkpoint.keep): the one at its last evaluation before the end."""
    ckpt = torch.load(run_folder(root) / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"]


def wandb_rows(root: Path) -> list[dict]:
    """The W&B history rows, less W&B's clocks and Lightning's epoch count (a group of batches is
    one of Lightning's batches: its epoch counter does not see the stream's epochs)."""
    (path,) = (root / "outputs").rglob("offline-run-*/*.wandb")
    return [{k: v for k, v in row.items() if k not in ("_runtime", "_timestamp", "epoch")} for row in history(path)]


def same_run(a: Path, b: Path, weights: bool = True) -> None:
    """Record (but clocks, and the id, overrides, config and steps_per_batch), curves, weights."""
    ra, rb = (json.loads((run_folder(x) / "record.json").read_text()) for x in (a, b))
    skip = UNSTABLE | {"run_id", "overrides", "steps_per_batch"}
    assert {k: v for k, v in ra.items() if k not in skip} == {k: v for k, v in rb.items() if k not in skip}
    ca, cb = (json.loads((run_folder(x) / "curves.json").read_text()) for x in (a, b))
    for key in ("step", "acc", "test_acc", "loss", "probe"):
        assert ca[key] == cb[key], key
    if not weights:
        return
    wa, wb = (torch.load(run_folder(x) / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
              for x in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def train_twice(args: list[str], tmp_path: Path) -> tuple[Path, Path]:
    """The run with run.steps_per_batch=1, and with the default (auto); each one's stdout in out.txt."""
    one, auto = tmp_path / "one", tmp_path / "auto"
    for cwd, extra in ((one, ["run.steps_per_batch=1"]), (auto, [])):
        cwd.mkdir()
        proc = run_cli(*args, *extra, "run.checkpoint.every_s=0", "run.checkpoint.keep=true", cwd=cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (cwd / "out.txt").write_text(proc.stdout)
    return one, auto


def bar_lines(cwd: Path) -> list[str]:
    """What the progress bar showed (Lightning's bar writes to stdout)."""
    text = (cwd / "out.txt").read_text().replace("\r", "\n")
    return [line for line in text.splitlines() if line.startswith("Training steps")]


def test_grouped_steps_train_the_same_run_as_one_step_per_batch(tiny_data, tmp_path):
    one, auto = train_twice(["train", "experiment=mnist_bn", f"data.root={tiny_data}", *GROUPED,
                             "trainer.enable_progress_bar=true"], tmp_path)
    assert lightning_batches(one) == 96 and lightning_batches(auto) == 8  # it did group: 12 steps a batch
    same_run(one, auto)
    records = [json.loads((run_folder(x) / "record.json").read_text()) for x in (one, auto)]
    assert [r["steps_per_batch"] for r in records] == [1, 12]
    rows_one, rows_auto = wandb_rows(one), wandb_rows(auto)
    assert rows_one == rows_auto
    # W&B's step axis counts optimizer steps (Lightning logs before counting the step: step - 1)
    losses = [row["trainer/global_step"] + 1 for row in rows_auto if "train/loss" in row]
    assert losses == list(range(12, 121, 12))
    assert [row["trainer/global_step"] + 1 for row in rows_auto if "val/acc" in row] == [24, 48, 72, 96, 120]
    # the progress bar: one for the run, in optimizer steps of max_steps, grouped or not (Lightning's
    # counts its batches, epoch by epoch: 10 an epoch here)
    for cwd in (one, auto):
        shown = bar_lines(cwd)
        assert shown and "120/120" in shown[-1] and all("/120 " in line for line in shown), shown[-3:]
        assert "Epoch 1" not in (cwd / "out.txt").read_text()


@pytest.mark.slow  # ~15 s; make test-slow
def test_population_statistics_average_the_training_batches_not_the_groups(tiny_data, tmp_path):
    """Alg. 2 after training (norm.inference=population) reads training batches of 60, one epoch at
    most (10 of the 30 asked for), grouped or not."""
    one, auto = train_twice(["train", "experiment=mnist_bn", f"data.root={tiny_data}", "norm.inference=population",
                             "norm.population_batches=30", "recipe.lr=0.002", "logger=none", *GROUPED], tmp_path)
    record = json.loads((run_folder(auto) / "record.json").read_text())
    assert record["population_batches"] == 10 and record["final_acc"] != record["final_acc_ema"]
    same_run(one, auto)


def test_grouped_steps_draw_dropout_and_distortions_as_one_step_per_batch(tmp_path):
    """inception_mini: dropout 0.4 and photometric distortions draw from torch's generator every
    step; a group is distorted batch by batch, so the draws come in the same order."""
    data = make_idx_dataset(tmp_path / "data", n_val=200)
    args = ["train", "model=inception_mini", "norm=batch", "trainer.max_steps=24", "run.eval_every=12",
            "logger=none", f"data.root={data}", "data.val_size=200", "run.probe_batch=50", "data.eval_batch_size=100"]
    one, auto = train_twice(args, tmp_path)
    assert lightning_batches(one) == 12 and lightning_batches(auto) == 3  # gcd(24, 12, 100) = 4 steps a batch
    same_run(one, auto)


@pytest.mark.slow  # ~15 s; make test-slow
def test_a_grouped_run_diverges_at_the_same_step(tiny_data, tmp_path):
    """A divergence found mid-group (checked every 10 steps, groups of 12) ends the run after the
    same step as with one step per batch, with the same record."""
    one, auto = train_twice(["train", "experiment=mnist_bn", f"data.root={tiny_data}", "norm=none",
                             "model.activation=relu", "recipe.lr=1e6", "logger=none", *GROUPED], tmp_path)
    record = json.loads((run_folder(auto) / "record.json").read_text())
    assert record["status"] == "diverged" and record["steps_per_batch"] == 12
    assert record["diverged_at"] % 12 and record["steps"] == record["diverged_at"] + 1  # mid-group, its step taken
    same_run(one, auto, weights=False)


def test_a_killed_grouped_run_resumes_exactly(tiny_data, tmp_path):
    """Killed after step 24 (a group's end; its evaluation not yet run): resumed from the
    checkpoint of step 12, the same run as an uninterrupted one."""
    args = ["train", "experiment=mnist_bn", f"data.root={tiny_data}", "trainer.max_steps=60", "run.eval_every=12",
            "run.checkpoint.every_s=0", "run.checkpoint.keep=true", "logger=none"]  # auto: gcd(60, 12, 100) = 4
    whole = tmp_path / "whole"
    whole.mkdir()
    assert run_cli(*args, cwd=whole).returncode == 0
    assert lightning_batches(whole) == 12  # at step 48
    proc = killed_then_resumed(args, tmp_path / "cut", "step-24")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert assert_same_run(whole, tmp_path / "cut")["resumed_at"] == [12]


def test_groups_are_the_streams_batches_across_epochs_and_seek_in_batches():
    images, labels = torch.arange(50.0).view(50, 1), torch.arange(50)
    stream = BatchStream(images, labels, 10, "global", 1, seed=3)  # 5 batches an epoch
    reference = BatchStream(images, labels, 10, "global", 1, seed=3)
    flat = [b for _ in range(3) for b in reference]  # each pass is the next epoch
    groups = iter(Groups(stream, 3))
    for i in range(4):  # 12 batches: the groups straddle the epochs' ends
        x, y = next(groups)
        assert torch.equal(x, torch.cat([b[0] for b in flat[3 * i:3 * i + 3]]))
        assert torch.equal(y, torch.cat([b[1] for b in flat[3 * i:3 * i + 3]]))
    resumed = Groups(BatchStream(images, labels, 10, "global", 1, seed=3), 3)
    resumed.seek(6)  # where a resume after 6 steps puts it: epoch 1, its second batch
    assert torch.equal(next(iter(resumed))[1], torch.cat([b[1] for b in flat[6:9]]))


class _InMemory:
    steps_per_batch = 1


def resolve(k=None, max_steps=50_000, eval_every=250, log_every=100, world=1, datamodule=_InMemory(), **trainer):
    cfg = OmegaConf.create({"run": {"steps_per_batch": k}, "trainer": {
        "max_steps": max_steps, "val_check_interval": eval_every, "log_every_n_steps": log_every, **trainer}})
    plan = ProcessPlan(mode="ddp" if world > 1 else "single", devices=world, ddp=world > 1)
    return resolve_steps_per_batch(cfg, plan, datamodule)


def test_auto_takes_the_largest_k_up_to_50_dividing_the_runs_intervals():
    assert resolve() == 50  # the MLP's recipe: gcd(50,000, 250, 100) = 50
    assert resolve(max_steps=40_000, eval_every=1_000) == 50  # Inception's: gcd 100, largest divisor <= 50
    assert resolve(max_steps=120, eval_every=24, log_every=12) == 12
    assert resolve(max_steps=50, eval_every=7) == 1
    assert resolve(world=2) == 1  # DDP
    assert resolve(datamodule=object()) == 1  # data that does not group
    assert resolve(gradient_clip_val=0.5) == 1 and resolve(accumulate_grad_batches=2) == 1
    assert resolve(eval_every=0.5) == 1  # an evaluation every half epoch: no whole number of steps
    assert resolve(max_epochs=1) == 1 and resolve(check_val_every_n_epoch=1) == 1  # Lightning's epochs
    assert resolve(limit_train_batches=0.5) == 1
    assert resolve(max_epochs=-1, min_epochs=None, check_val_every_n_epoch=None, limit_train_batches=1.0) == 50
    assert resolve(k=1, world=2) == 1 and resolve(k=25) == 25


@pytest.mark.parametrize("kwargs, mentions", [
    ({"k": 3}, ["run.steps_per_batch=3", "trainer.max_steps=50000 is not a multiple of it",
                "trainer.val_check_interval=250", "trainer.log_every_n_steps=100"]),
    ({"k": 5, "world": 2}, ["2 process(es) under DDP"]),
    ({"k": 5, "datamodule": object()}, ["its data module (object) does not group batches"]),
    ({"k": 5, "gradient_clip_val": 0.5}, ["trainer.gradient_clip_val=0.5"]),
    ({"k": 5, "eval_every": 0.5}, ["trainer.val_check_interval=0.5", "whole numbers of steps"]),
    ({"k": 5, "max_epochs": 3}, ["trainer.max_epochs=3 (counts Lightning's batches or epochs)"]),
])
def test_a_k_the_run_cannot_take_names_what_stands_in_the_way(kwargs, mentions):
    with pytest.raises(ConfigError) as e:
        resolve(**kwargs)
    for text in mentions:
        assert text in str(e.value), (text, str(e.value))

