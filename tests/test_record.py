"""The typed run record (bnbench/results/record.py): the JSON train.py writes, field for field
and in the same key order, and every record written so far read back to the same JSON."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from bnbench.results.record import RECORD_KEYS, Curves, Env, Record
from bnbench.results.store import read_record, write_run

# record.json's keys, in the order train.py has always written them (README, "Results")
RECORD_JSON_ORDER = [
    "schema", "run_id", "status", "error", "study", "launch", "variant", "seed", "choices", "overrides", "recipe",
    "num_classes", "co_batch_rate", "devices", "batch_per_device", "global_batch", "norm_batch", "launcher",
    "steps_per_batch", "steps",
    "max_steps", "diverged_at", "train_size", "val_size", "test_size", "best_acc", "best_step", "test_acc_at_best",
    "final_acc", "final_test_acc", "final_acc_ema", "final_test_acc_ema", "population_batches", "targets",
    "steps_to_target", "time_to_target", "train_s", "eval_s", "train_cpu_s", "wall_s", "started", "env", "config", "output_dir",
    "resumed_at",
]
CURVES_ORDER = ["step", "acc", "test_acc", "train_s", "loss", "probe_quantiles", "probe", "probe_step"]
ENV = {"git": {"sha": "abc", "dirty": False}, "code": "abc", "python": "3.11.7", "packages": {"torch": "2.5"},
       "device": "cpu", "device_name": "cpu", "torch_threads": 1, "host": "h", "platform": "Linux"}


def full_record() -> dict:
    values = {k: None for k in RECORD_JSON_ORDER}
    values.update(schema=1, run_id="r1", status="completed", study="s", launch="L", variant="bn", seed=3,
                  choices={"norm": "batch"}, overrides=["seed=3"], recipe={"lr": 0.5}, num_classes=10, devices=1,
                  batch_per_device=60, global_batch=60, launcher="single", steps_per_batch=1, steps=40, max_steps=40,
                  train_size=600,
                  val_size=4000, test_size=200, best_acc=0.9, best_step=20, test_acc_at_best=0.8, final_acc=0.7,
                  final_test_acc=0.95, targets=[0.85], steps_to_target={"0.85": 20}, time_to_target={"0.85": 2.0},
                  train_s=4.0, eval_s=1.0, train_cpu_s=3.9, wall_s=5.5, started="2026-01-01T00:00:00+00:00", env=ENV,
                  config={"run": {"eval_every": 10}}, output_dir="/o", resumed_at=[])
    return values


def test_the_fields_are_record_jsons_keys_in_its_order():
    assert [f.name for f in Record._fields()][:-1] == RECORD_JSON_ORDER and Record._fields()[-1].name == "curves"
    assert [f.name for f in Curves._fields()] == CURVES_ORDER
    assert set(RECORD_KEYS) <= set(RECORD_JSON_ORDER)
    assert {f.name for f in fields(Record)} >= {"extra", "absent"}


def test_a_new_record_writes_the_same_bytes_as_its_json():
    data = full_record()
    rec = Record.from_json(data)
    assert rec.to_json() == data and list(rec.to_json()) == RECORD_JSON_ORDER
    assert json.dumps(rec.to_json(), indent=1) == json.dumps(data, indent=1)
    # built field by field, as train.py does, it is the same record
    built = Record(**{k: v for k, v in data.items() if k != "env"}, env=Env(**ENV))
    assert built.to_json() == {**data, "curves": None} and built.env.git["sha"] == "abc"


def test_typed_attributes_and_nested_objects():
    curves = {"step": [10, 20], "acc": [0.5, 0.9], "test_acc": [0.4, 0.8], "train_s": [1.0, 2.0], "loss": [1, 0.5]}
    rec = Record.from_json({**full_record(), "curves": curves})
    assert (rec.status, rec.seed, rec.best_acc, rec.steps_to_target) == ("completed", 3, 0.9, {"0.85": 20})
    assert isinstance(rec.env, Env) and rec.env.torch_threads == 1 and rec.env.packages["torch"] == "2.5"
    assert isinstance(rec.curves, Curves) and rec.curves.acc == [0.5, 0.9] and rec.curves.probe is None
    assert rec.to_json()["curves"] == curves  # probe keys the curves lacked stay absent


def test_an_older_record_keeps_what_it_lacks_absent_and_what_it_adds():
    old = {"run_id": "x", "status": "diverged", "variant": "a", "seed": 0, "steps": 5, "max_steps": 9,
           "best_acc": None, "best_step": None, "final_acc": None, "steps_to_target": {}, "train_s": 1.0,
           "wall_s": 2.0, "env": {"git": {"sha": None}, "gpu": "none"}, "config": {}, "a_later_key": [1]}
    rec = Record.from_json(old)
    assert rec.to_json() == old and rec == old
    assert rec.devices is None and rec.test_size is None and rec.env.device is None  # typed: None
    assert "devices" not in rec and rec.get("devices", 1) == 1  # as a mapping: absent, as in the dict
    with pytest.raises(KeyError):
        rec["devices"]
    assert rec["a_later_key"] == [1] and rec.extra == {"a_later_key": [1]} and rec.env.extra == {"gpu": "none"}
    assert dict(rec) == old and len(rec) == len(old) and set(rec) == set(old)


def test_the_mapping_reads_as_the_dict_did():
    data = {**full_record(), "curves": {"step": [1], "acc": [0.5], "train_s": [0.1]}}
    rec = Record.from_json(data)
    assert rec["best_acc"] == 0.9 and rec["env"]["git"]["sha"] == "abc" and rec["curves"]["step"] == [1]
    assert rec["curves"].get("probe") is None and rec.get("nope") is None
    assert Record.of(rec) is rec and Record.of(data) == rec
    assert rec != {**data, "best_acc": 0.1} and rec != Record.from_json({**data, "seed": 4})


def test_written_and_read_back_through_the_store(tmp_path):
    data = {**full_record(), "curves": {"step": [10], "acc": [0.5], "test_acc": [0.4], "train_s": [1.0],
                                        "loss": [0.3], "probe_quantiles": [0.15, 0.5, 0.85], "probe": None,
                                        "probe_step": []}}
    out = Record.from_json(data).to_json()
    path = write_run(tmp_path / "run", out, out.pop("curves"))
    assert list(json.loads(path.read_text())) == RECORD_JSON_ORDER
    assert Record.from_json(read_record(path)) == data
