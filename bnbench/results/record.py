"""A run's record, typed: what its record.json and curves.json hold (fields: README, "Results").

`Record.to_json()` is the JSON object bnbench/train.py writes (curves.json: `Record.curves`);
`Record.from_json()` reads any record written so far. A key the JSON lacks (a record older than
the field) reads as None and stays absent when written back; keys beyond the fields are kept in
`extra`: from_json then to_json gives the same object. Each class also reads as a read-only
mapping by JSON key (`record["best_acc"]`, `record.get("devices", 1)`), for code that still
reads the record as a dict.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, Literal

SCHEMA_VERSION = 1
Status = Literal["completed", "diverged", "failed"]

# What readers (reports, study relaunches) rely on: a record.json without these is skipped
# (bnbench/results/store.py), as is a curves.json without CURVE_KEYS.
RECORD_KEYS = ("run_id", "status", "variant", "seed", "steps", "max_steps", "best_acc", "best_step", "final_acc",
               "steps_to_target", "train_s", "wall_s", "env", "config")
CURVE_KEYS = ("step", "acc", "train_s")


def _nested(cls: type, **kw):
    """A field whose JSON value is an object read as `cls` (a JsonObject)."""
    return field(metadata={"json": cls}, **kw)


@dataclass(kw_only=True)
class JsonObject(Mapping):
    """One dataclass field per key of a JSON object, written in the fields' order."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # keys beyond the fields
    absent: frozenset[str] = field(default=frozenset(), repr=False)  # fields the JSON lacked

    @classmethod
    @cache
    def _fields(cls) -> tuple:
        return tuple(f for f in fields(cls) if f.name not in ("extra", "absent"))

    @classmethod
    @cache
    def _names(cls) -> frozenset[str]:
        return frozenset(f.name for f in cls._fields())

    @classmethod
    def from_json(cls, obj: Mapping):
        values = {}
        for f in cls._fields():
            value = obj.get(f.name)
            kind = f.metadata.get("json")
            values[f.name] = kind.from_json(value) if kind and isinstance(value, Mapping) else value
        names = cls._names()
        return cls(**values, extra={k: v for k, v in obj.items() if k not in names},
                   absent=frozenset(n for n in names if n not in obj))

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in self._fields():
            if f.name not in self.absent:
                value = getattr(self, f.name)
                out[f.name] = value.to_json() if isinstance(value, JsonObject) else value
        return {**out, **self.extra}

    def __eq__(self, other) -> bool:  # as JSON objects (a dict of the same JSON is equal)
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.to_json() == (other.to_json() if isinstance(other, JsonObject) else dict(other))

    # the read-only mapping, by JSON key
    def __getitem__(self, key: str):
        if key in self.extra:
            return self.extra[key]
        if key in self.absent or key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        yield from (f.name for f in self._fields() if f.name not in self.absent)
        yield from self.extra

    def __len__(self) -> int:
        return len(self._fields()) - len(self.absent) + len(self.extra)


@dataclass(eq=False)
class Curves(JsonObject):
    """curves.json: one value per evaluation (`step`), and the probe (Fig. 1b, c)."""

    step: list[int] | None = None
    acc: list[float | None] | None = None  # validation accuracy: what selection reads (targets.SELECTION)
    test_acc: list[float | None] | None = None
    train_s: list[float] | None = None  # training seconds so far (evaluation excluded)
    loss: list[float | None] | None = None
    probe_quantiles: list[float] | None = None
    probe: list | None = None  # [quantile][unit][probe]: the last hidden layer's sigmoid inputs
    probe_step: list[int] | None = None


@dataclass(eq=False)
class Env(JsonObject):
    """Where and with what a run ran (bnbench/results/env.py: fingerprint)."""

    git: dict | None = None  # sha, dirty
    code: str | None = None
    python: str | None = None
    packages: dict[str, str] | None = None
    device: str | None = None
    device_name: str | None = None
    torch_threads: int | None = None
    host: str | None = None
    platform: str | None = None


@dataclass(eq=False)
class Record(JsonObject):
    """record.json, in its key order; `curves` (curves.json) is attached by readers and the writer."""

    schema: int | None
    run_id: str
    status: Status
    error: str | None
    study: str | None
    launch: str | None
    variant: str | None
    seed: int
    choices: dict[str, str] | None
    overrides: list[str] | None
    recipe: dict | None
    num_classes: int | None
    co_batch_rate: float | None
    # processes and batches (train.batch_sizes)
    devices: int | None
    batch_per_device: int | None
    global_batch: int | None
    norm_batch: int | None
    launcher: str | None
    steps_per_batch: int | None  # optimizer steps per Lightning batch (run.steps_per_batch, resolved)
    steps: int
    max_steps: int
    diverged_at: int | None
    # examples trained on, selected on (validation), reported beside (test)
    train_size: int | None
    val_size: int | None
    test_size: int | None
    best_acc: float | None
    best_step: int | None
    test_acc_at_best: float | None
    final_acc: float | None
    final_test_acc: float | None
    final_acc_ema: float | None
    final_test_acc_ema: float | None
    population_batches: int | None
    targets: list[float] | None
    steps_to_target: dict[str, int | None]
    time_to_target: dict[str, float | None] | None
    train_s: float
    eval_s: float | None
    # this process's CPU seconds over the same stretches as train_s; on CPU, below train_s x
    # torch threads where the run shared its cores (report: "Clocks")
    train_cpu_s: float | None
    wall_s: float
    started: str | None
    env: Env = _nested(Env)
    config: dict = field(default_factory=dict)
    output_dir: str | None = None
    resumed_at: list[int] | None = None
    curves: Curves | None = _nested(Curves, default=None)

    @classmethod
    def of(cls, record: Record | Mapping) -> Record:
        """`record`, read as a Record if it is a JSON object."""
        return record if isinstance(record, Record) else cls.from_json(record)
