"""Typed schema of the training config, registered in Hydra's ConfigStore.

`conf/train.yaml` lists `train_schema` first in its defaults, so every group's YAML merges
onto these dataclasses: a misspelt key or a string where a number belongs fails when the
config is composed, not an hour into a run. Groups whose shape varies by option (data,
model, trainer, logger) stay untyped; their constructors check them.

Registration is explicit (`register_configs()`, called by the CLI): nothing at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


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


@dataclass
class NormConf:
    kind: str = "none"
    impl: str = "torch"
    inference: str = "ema"
    momentum: float = 0.1
    eps: float = 1e-5
    population_batches: int = 100
    stats: str = "device"  # device | global | ghost: which values BN normalizes over (conf/norm/batch.yaml)
    ghost_size: Optional[int] = None  # examples per ghost batch, only with stats=ghost


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
    mode: str = "global"


@dataclass
class RunConf:
    eval_every: int = MISSING
    targets: list[float] = field(default_factory=list)
    threads: Optional[int] = None
    probe_batch: int = 1000
    max_loss: float = 100.0
    check_every: int = 10
    channels_last: bool = False


@dataclass
class PathsConf:
    results: str = "results"
    reports: str = "reports"


@dataclass
class StudyConf:
    name: str = "adhoc"
    variant: Optional[str] = None
    launch: str = "${now:%Y-%m-%d_%H-%M-%S}"


@dataclass
class TrainConf:
    seed: int = 0
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
    logger: Any = MISSING
    run: RunConf = field(default_factory=RunConf)
    paths: PathsConf = field(default_factory=PathsConf)
    study: StudyConf = field(default_factory=StudyConf)


def register_configs() -> None:
    ConfigStore.instance().store(name="train_schema", node=TrainConf)
