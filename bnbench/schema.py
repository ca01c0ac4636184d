"""Typed schema of the training config, registered in Hydra's ConfigStore.

`conf/train.yaml` lists `train_schema` first in its defaults, so every group's YAML merges
onto these dataclasses: a misspelt key, a string where a number belongs or a name outside a
closed set (the Enums below: norm kind/impl/inference/stats/kernel, shuffle mode, logger kind/mode)
fails when the config is composed, not an hour into a run. What a type cannot say (ranges,
keys added with `+key=`) is declared here too, as field metadata, and checked by
`check_schema` before anything runs.

Groups whose shape varies by option (data, model, trainer) stay untyped: each option names
its class (`_target_`), and that class's signature is their schema (bnbench.preflight).

Registration is explicit (`register_configs()`, called by the CLI): nothing at import time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from bnbench.errors import ConfigError

# The closed sets of names, as the code that reads them knows them (bnbench.nn.norm,
# bnbench.nn.batchnorm, bnbench.data.ordering; tests/test_configs.py checks they agree).
# Spelled out here so that composing a config (and tab completion) needs no torch.
NORM_KINDS = ("none", "batch")
NORM_IMPLS = ("torch", "bnbench")
NORM_INFERENCE = ("ema", "population")
NORM_STATS = ("device", "global", "ghost")
NORM_KERNELS = ("fast", "reference", "compiled", "cpp")
SHUFFLE_MODES = ("shard", "within_shard", "global")
LOGGER_KINDS = ("wandb", "none")
LOGGER_MODES = ("offline", "online", "disabled")

# Groups whose keys the schema does not fix: `+data.x=`, `+model.x=`, `+trainer.x=` add an
# argument of the option's class (checked against its signature before the run).
UNTYPED = ("data", "model", "trainer")
SEED_MAX = 2**32 - 1  # numpy's seed range, which Lightning's seed_everything enforces


class Choice(str, Enum):
    """A name from a closed set. A str (compares, hashes, formats and serializes as its name),
    so code and records see plain strings; the config refuses any other name."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


def _choice(name: str, names: tuple[str, ...]) -> type[Choice]:
    # the functional API: `global` is a keyword, so not a class attribute
    return Choice(name, [(n, n) for n in names], module=__name__, qualname=name)


NormKind = _choice("NormKind", NORM_KINDS)
NormImpl = _choice("NormImpl", NORM_IMPLS)
NormInference = _choice("NormInference", NORM_INFERENCE)
NormStats = _choice("NormStats", NORM_STATS)
NormKernel = _choice("NormKernel", NORM_KERNELS)
ShuffleMode = _choice("ShuffleMode", SHUFFLE_MODES)
LoggerKind = _choice("LoggerKind", LOGGER_KINDS)
LoggerMode = _choice("LoggerMode", LOGGER_MODES)


def plain(value):
    """The plain str of a Choice (anything else unchanged): for code outside the config."""
    return value.value if isinstance(value, Enum) else value


def bounded(default, lo=None, hi=None, *, above=None, why: str = ""):
    """A field with a range: lo <= value <= hi, value > above (None: no bound; null values pass)."""
    kw = {"default_factory": default} if callable(default) else {"default": default}
    return field(metadata={"lo": lo, "hi": hi, "above": above, "why": why}, **kw)


@dataclass
class DecayConf:
    gamma: float = 1.0
    every_steps: float = 1000.0


@dataclass
class DistortionConf:
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0


@dataclass
class RecipeConf:
    batch_size: int = MISSING
    steps: int = MISSING
    eval_every: int = MISSING
    lr: float = MISSING
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_decay: DecayConf = field(default_factory=DecayConf)
    dropout: float = 0.0
    lrn: bool = False
    distortion: DistortionConf = field(default_factory=DistortionConf)
    targets: list[float] = field(default_factory=list)
    # in-memory data's evaluation batch (data.eval_batch_size): a speed setting, not the paper's
    eval_batch_size: int = 2000


@dataclass
class NormConf:
    kind: NormKind = NormKind["none"]
    impl: NormImpl = NormImpl["torch"]
    inference: NormInference = NormInference["ema"]
    momentum: float = 0.1
    eps: float = 1e-5
    population_batches: int = bounded(100, 1, why="training batches for the population statistics")
    stats: NormStats = NormStats["device"]  # which values BN normalizes over (conf/norm/batch.yaml)
    ghost_size: Optional[int] = None  # examples per ghost batch, only with stats=ghost
    kernel: NormKernel = NormKernel["fast"]  # implementation of the own BN's training step (conf/norm/batch.yaml)


# The seven modifications of Sec. 4.2.1: a state or a factor each, read in bnbench/recipe.py.
@dataclass
class LrScaleConf:
    scale: float = 1.0


@dataclass
class KeepConf:
    keep: bool = True


@dataclass
class FactorConf:
    factor: float = 1.0


@dataclass
class SpeedupConf:
    speedup: float = 1.0


@dataclass
class ShuffleConf:
    mode: ShuffleMode = ShuffleMode["global"]


# What a run does when online W&B cannot start (bnbench.loggers): log offline, or stop.
LOGGER_ON_UNREACHABLE = ("offline", "fail")
LoggerOnUnreachable = _choice("LoggerOnUnreachable", LOGGER_ON_UNREACHABLE)

# When an evaluation also covers the test set (bnbench.callbacks.tracker.RunTracker.wants_test):
# only where the record reads it (a new best validation accuracy, the last evaluation), or always.
TEST_AT = ("best", "every")
TestAt = _choice("TestAt", TEST_AT)


@dataclass
class LoggerConf:
    kind: LoggerKind = MISSING
    project: Optional[str] = None
    entity: Optional[str] = None
    mode: Optional[LoggerMode] = None
    tags: list[str] = field(default_factory=list)
    init_timeout: float = bounded(30.0, above=0, why="seconds an online W&B run may take to start")
    on_unreachable: LoggerOnUnreachable = LoggerOnUnreachable["offline"]
    finish_timeout: Optional[float] = bounded(
        60.0, above=0, why="seconds W&B may take to upload at the end of a run; null: no limit")


@dataclass
class CheckpointConf:
    every_s: Optional[float] = bounded(300.0, 0, why="seconds of training between checkpoints; 0: every evaluation")
    keep: bool = False


@dataclass
class RunConf:
    eval_every: int = bounded(MISSING, 1, why="steps between evaluations")
    targets: list[float] = field(default_factory=list)
    threads: Optional[int] = bounded(None, 1, why="torch threads; null: torch's default")
    probe_batch: int = bounded(1000, 1, why="test images in the probe batch")
    test_at: TestAt = TestAt["best"]
    max_loss: float = bounded(100.0, above=0, why="the loss above which a run counts as diverged")
    check_every: int = bounded(10, 1, why="steps between divergence checks")
    channels_last: Optional[bool] = None  # null: auto (bnbench/train.py, resolve_channels_last)
    steps_per_batch: Optional[int] = bounded(
        None, 1, why="optimizer steps per Lightning batch; null: auto (bnbench/train.py, resolve_steps_per_batch)")
    checkpoint: CheckpointConf = field(default_factory=CheckpointConf)
    resume: bool = True


@dataclass
class PathsConf:
    results: str = "results"
    reports: str = "reports"
    checkpoints: str = "${paths.results}/${study.name}/checkpoints"


@dataclass
class StudyConf:
    name: str = "adhoc"
    variant: Optional[str] = None
    launch: str = "${now:%Y-%m-%d_%H-%M-%S}"


@dataclass
class TrainConf:
    seed: int = bounded(0, 0, SEED_MAX, why="numpy's seed range")
    data: Any = MISSING
    model: Any = MISSING
    norm: NormConf = field(default_factory=NormConf)
    recipe: RecipeConf = field(default_factory=RecipeConf)
    lr: LrScaleConf = field(default_factory=LrScaleConf)
    dropout: KeepConf = field(default_factory=KeepConf)
    l2: FactorConf = field(default_factory=FactorConf)
    lr_decay: SpeedupConf = field(default_factory=SpeedupConf)
    lrn: KeepConf = field(default_factory=KeepConf)
    shuffle: ShuffleConf = field(default_factory=ShuffleConf)
    distort: FactorConf = field(default_factory=FactorConf)
    trainer: Any = MISSING
    logger: LoggerConf = field(default_factory=LoggerConf)
    run: RunConf = field(default_factory=RunConf)
    paths: PathsConf = field(default_factory=PathsConf)
    study: StudyConf = field(default_factory=StudyConf)


def register_configs() -> None:
    ConfigStore.instance().store(name="train_schema", node=TrainConf)


def check_schema(cfg: DictConfig) -> None:
    """What the types cannot say: no key outside the schema (OmegaConf lets `+key=` add one to
    a typed node), and every bounded field in its range. Raises ConfigError naming the key."""
    _check_node(cfg, TrainConf, "")


def _check_node(node: DictConfig, schema: type, prefix: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    extra = [str(k) for k in node if k not in fields and not (prefix == "" and k == "hydra")]
    if extra:
        raise ConfigError(unknown_key(prefix + extra[0]))
    for name, f in fields.items():
        if name not in node:
            continue
        if f.type in _NESTED:
            if isinstance(node[name], DictConfig):
                _check_node(node[name], _NESTED[f.type], f"{prefix}{name}.")
        elif "why" in f.metadata and not OmegaConf.is_missing(node, name):
            _check_bounds(f"{prefix}{name}", node[name], f.metadata)


def unknown_key(key: str) -> str:
    """The message for a key outside the typed schema, listing the keys there are."""
    schema = TrainConf
    for part in key.split(".")[:-1]:
        f = {f.name: f for f in dataclasses.fields(schema)}.get(part)
        schema = _NESTED.get(f.type) if f else None
        if schema is None:
            return f"{key} is not a config key"
    where = f"{key.rsplit('.', 1)[0]}'s keys" if "." in key else "top-level keys"
    return (f"{key} is not a config key ({where}: {', '.join(f.name for f in dataclasses.fields(schema))}); "
            f"`+key=value` adds keys only to {', '.join(UNTYPED)} (arguments of their classes)")


def _check_bounds(key: str, value, meta: dict) -> None:
    if value is None:
        return
    lo, hi, above, why = meta["lo"], meta["hi"], meta["above"], meta["why"]
    if (lo is not None and value < lo) or (hi is not None and value > hi) or (above is not None and value <= above):
        if lo is not None and hi is not None:
            need = f"in [{lo}, {hi}]"
        elif above is not None:
            need = f"> {above}"
        else:
            need = f">= {lo}" if lo is not None else f"<= {hi}"
        raise ConfigError(f"{key} must be {need} ({why}), got {value}")


# dataclass fields' types are strings under `from __future__ import annotations`
_NESTED = {cls.__name__: cls for cls in (DecayConf, DistortionConf, RecipeConf, NormConf, LrScaleConf, KeepConf,
                                         FactorConf, SpeedupConf, ShuffleConf, LoggerConf, RunConf, PathsConf,
                                         StudyConf)}
