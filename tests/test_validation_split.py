"""The validation split (bnbench/data/split.py): a fixed, seeded part of the training set that
every selection reads (best step, steps and time to target), with the test set reported beside
and never selected on."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bnbench.data.in_memory import IDXDataModule
from bnbench.data.split import split_indices
from bnbench.data.synthetic import SyntheticDataModule
from bnbench.results.targets import selection_curve
from conftest import VAL_SIZE, compose, make_idx_dataset, records_under, run_cli
from wandb_log import summary_and_run


def rows(images: torch.Tensor) -> set[bytes]:
    """Each example's pixels, as bytes: the generated images are noise, so each is unique."""
    return {x.numpy().tobytes() for x in images}


def built_data(root: Path, *overrides: str):
    from bnbench.train import build

    dm = build(compose([f"data.root={root}", "logger=none", *overrides])).datamodule
    dm.setup()
    return dm


@pytest.mark.parametrize("n, k, seed", [(10, 3, 0), (4600, 4000, 0), (4600, 4000, 7)])
def test_split_indices_partition_the_file_in_stored_order(n, k, seed):
    train, val = split_indices(n, k, seed)
    assert len(val) == k and len(train) == n - k
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(n))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)
    again = split_indices(n, k, seed)
    assert torch.equal(again[0], train) and torch.equal(again[1], val)


def test_the_split_is_fixed_across_seeds_and_variants_and_disjoint_from_training(tiny_data):
    """The run's seed and the shuffle mode change the training order, never which examples are
    held out; data.val_seed does. Training and validation partition the training file."""
    dm = built_data(tiny_data)
    assert dm.split_sizes() == {"train_size": 600, "val_size": VAL_SIZE, "test_size": 200}
    held_out = rows(dm.val_set[0])
    for overrides in (["seed=1"], ["seed=12345", "shuffle=shard"], ["experiment=mnist_bn", "seed=3"]):
        other = built_data(tiny_data, *overrides)
        assert torch.equal(other.val_set[0], dm.val_set[0]) and torch.equal(other.val_set[1], dm.val_set[1])
        assert torch.equal(other.train_set[0], dm.train_set[0])
    assert not held_out & rows(dm.train_set[0])
    assert len(held_out | rows(dm.train_set[0])) == 600 + VAL_SIZE
    moved = built_data(tiny_data, "data.val_seed=1")
    assert not torch.equal(moved.val_set[0], dm.val_set[0]) and len(moved.val_set[1]) == VAL_SIZE


@pytest.mark.parametrize("shuffle", ["global", "shard", "within_shard"])
def test_training_never_reads_a_validation_example(tiny_data, shuffle):
    """Three epochs of every shuffle mode, on one process and on each rank of two: every batch
    is training examples only, and each epoch reads every training example once."""
    for world in (1, 2):
        seen = []
        for rank in range(world):
            dm = IDXDataModule("mnist", str(tiny_data), batch_size=60, shuffle=shuffle, num_shards=6, seed=4,
                               val_size=VAL_SIZE)
            dm.trainer = SimpleNamespace(global_rank=rank, world_size=world, strategy=SimpleNamespace(
                root_device=torch.device("cpu")), global_step=0)
            loader = dm.train_dataloader()
            for _ in range(3):
                seen.append(torch.cat([x for x, _ in loader]))
        held_out, training = rows(dm.val_set[0]), rows(dm.train_set[0])
        for epoch in seen:
            assert not rows(epoch) & held_out
        assert rows(torch.cat(seen)) == training


def test_synthetic_data_offers_validation_and_test_batches_of_their_own():
    dm = SyntheticDataModule("synthetic", batch_size=4, in_shape=(3, 8, 8), num_classes=5, batches_per_epoch=3,
                             eval_batches=2, val_batches=3, seed=1)
    val, test = ([x for x, _ in loader] for loader in dm.val_dataloader())
    assert len(val) == 3 and len(test) == 2
    train = next(iter(dm.train_dataloader()))[0]
    assert not torch.equal(val[0], test[0]) and not torch.equal(val[0], train)
    assert dm.split_sizes() == {"train_size": 12, "val_size": 12, "test_size": 8}


@pytest.mark.parametrize("value, message", [
    ("-1", "data.val_size must be >= 1 (training examples held out for validation: learning rates, targets and "
           "best steps are chosen on them, never on the test set), got -1"),
    ("0", "got 0"),
    ("4560", f"data.val_size=4560 leaves 40 of the {600 + VAL_SIZE} training examples of "),
], ids=["negative", "zero", "too-large"])
def test_a_bad_val_size_is_one_line_and_writes_nothing(tiny_data, tmp_path, value, message):
    proc = run_cli("train", f"data.root={tiny_data}", "logger=none", f"data.val_size={value}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bnbench: error: "), proc.stderr[-2000:]
    assert message in lines[0]
    if value == "4560":
        assert lines[0].endswith("for training, fewer than one batch (data.batch_size=60)")
    assert not records_under(tmp_path) and not (tmp_path / "outputs").exists()


def test_selection_reads_validation_where_validation_and_test_disagree(tiny_data, tmp_path):
    """A crafted curve: validation peaks at step 20, test at step 40; a target of 0.85 is reached
    on validation at step 20 and on test only at 30. The record selects on validation and reads
    test at the step validation chose."""
    from bnbench.callbacks.tracker import RunTracker
    from bnbench.parallel import RunContext, plan_processes
    from bnbench.train import build, make_record

    cfg = compose([f"data.root={tiny_data}", "logger=none", "run.targets=[0.85]"])
    plan, parts = plan_processes(cfg), build(cfg)
    tracker = RunTracker("run")
    tracker.curve = {"step": [10, 20, 30, 40], "acc": [0.5, 0.9, 0.8, 0.7], "test_acc": [0.4, 0.8, 0.9, 0.95],
                     "train_s": [1.0, 2.0, 3.0, 4.0], "loss": [1.0, 0.5, 0.4, 0.3]}
    trainer = SimpleNamespace(global_step=40, max_steps=40, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    final = {"final_acc": 0.7, "final_test_acc": 0.95, "final_acc_ema": None, "final_test_acc_ema": None,
             "population_batches": None}
    record = make_record(cfg, RunContext("r", str(tmp_path)), plan, parts, trainer, tracker, "completed", None, final,
                         datetime.now(timezone.utc), 5.0)
    assert (record["best_acc"], record["best_step"], record["test_acc_at_best"]) == (0.9, 20, 0.8)
    assert record["steps_to_target"] == {"0.85": 20} and record["time_to_target"] == {"0.85": 2.0}
    assert (record["final_acc"], record["final_test_acc"]) == (0.7, 0.95)
    assert (record["val_size"], record["test_size"], record["train_size"]) == (VAL_SIZE, 200, 600)
    # the reports' robust statistics read the same series
    assert selection_curve({"curves": tracker.curve}) == ([10, 20, 30, 40], [0.5, 0.9, 0.8, 0.7])


def test_the_test_set_is_evaluated_where_the_record_reads_it(tmp_path, tiny_data):
    """run.test_at=best evaluates the test set at each new best validation accuracy and at the
    last evaluation, and gives the same record figures as test_at=every (the same run, the test
    set evaluated at every evaluation): the validation curve, test_acc_at_best and final_test_acc
    are equal, and the test accuracies it has are the ones `every` measured at those steps."""
    proc = run_cli("train", "-m", f"data.root={tiny_data}", "experiment=mnist_bn", "trainer.max_steps=60",
                   "run.eval_every=5", "recipe.lr=2.0", "logger=none", "run.test_at=best,every", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {}
    for path in records_under(tmp_path / "results"):
        rec = json.loads(path.read_text())
        at = next(o.split("=", 1)[1] for o in rec["overrides"] if o.startswith("run.test_at="))
        runs[at] = rec, json.loads((path.parent / "curves.json").read_text())
    (best, best_curves), (every, every_curves) = runs["best"], runs["every"]
    assert best_curves["acc"] == every_curves["acc"] and None not in every_curves["test_acc"]
    tested = [i for i, a in enumerate(best_curves["test_acc"]) if a is not None]
    new_best = [i for i, a in enumerate(best_curves["acc"]) if all(a > b for b in best_curves["acc"][:i])]
    last = len(best_curves["acc"]) - 1
    assert tested == sorted({*new_best, last}) and len(tested) < last + 1  # some evaluations skipped it
    for i in tested:
        assert best_curves["test_acc"][i] == every_curves["test_acc"][i]
    for key in ("best_acc", "best_step", "test_acc_at_best", "final_acc", "final_test_acc"):
        assert best[key] == every[key], key


def test_a_run_records_both_accuracies_and_selects_on_validation(tmp_path):
    """A real run on data whose test labels are all wrong (each shifted by one class): validation
    accuracy climbs, test accuracy cannot. Best step and steps to target come from validation;
    the record and the W&B run hold the test figures beside."""
    from bnbench.data.idx import read_idx, write_idx

    data = make_idx_dataset(tmp_path / "data")
    labels = data / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, (read_idx(labels, expect_ndim=1) + 1) % 10)
    proc = run_cli("train", f"data.root={data}", "experiment=mnist_bn", "trainer.max_steps=30", "run.eval_every=10",
                   "run.targets=[0.9]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = records_under(tmp_path / "results")
    rec, curves = json.loads(path.read_text()), json.loads((path.parent / "curves.json").read_text())
    assert curves["step"] == [10, 20, 30] and len(curves["test_acc"]) == 3
    best = curves["acc"].index(max(curves["acc"]))
    assert rec["best_acc"] == max(curves["acc"]) >= 0.9 and rec["best_step"] == curves["step"][best]
    assert rec["test_acc_at_best"] == curves["test_acc"][best] < 0.5
    assert max(a for a in curves["test_acc"] if a is not None) < 0.5  # on test, no step would have reached the target
    assert rec["steps_to_target"]["0.9"] is not None
    assert (rec["final_acc"], rec["final_test_acc"]) == (curves["acc"][-1], curves["test_acc"][-1])
    assert (rec["train_size"], rec["val_size"], rec["test_size"]) == (600, VAL_SIZE, 200)
    (run_file,) = (tmp_path / "outputs").rglob("offline-run-*/*.wandb")
    summary, _ = summary_and_run(run_file)
    for key in ("best_acc", "best_step", "test_acc_at_best", "final_test_acc", "val_size", "test_size"):
        assert summary[key] == pytest.approx(rec[key]), key


def test_population_statistics_give_both_final_accuracies(tiny_data, tmp_path):
    from bnbench.train import run

    cfg = compose([f"data.root={tiny_data}", "logger=none", f"paths.results={tmp_path}", "norm=batch",
                   "norm.inference=population", "norm.population_batches=5", "trainer.max_steps=20",
                   "run.eval_every=10"])
    rec = run(cfg)
    assert rec["population_batches"] == 5
    for key in ("final_acc", "final_test_acc", "final_acc_ema", "final_test_acc_ema"):
        assert rec[key] is not None, key
    curves = json.loads((records_under(tmp_path)[0].parent / "curves.json").read_text())
    assert (rec["final_acc_ema"], rec["final_test_acc_ema"]) == (curves["acc"][-1], curves["test_acc"][-1])
