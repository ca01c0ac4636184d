"""The training recipe: a baseline's absolute values with the paper's modifications applied.

Each (data, model) pair has one baseline recipe, `conf/recipe/<data>_<model>.yaml`, holding
every absolute number (learning rate, weight decay, decay rate, dropout, distortion
strengths, batch size, steps). The seven modifications of Sec. 4.2.1 are config groups
holding only a state or a relative factor. This module is the one place each of them is
read: grep a group's name and you land here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from omegaconf import DictConfig

from bnbench.errors import ConfigError
from bnbench.schema import SHUFFLE_MODES as MODES, plain


@dataclass(frozen=True)
class Recipe:
    """Absolute training settings after the modifications (what the run actually uses)."""

    batch_size: int
    steps: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    decay_gamma: float  # lr(step) = lr * decay_gamma ** (step / decay_every)
    decay_every: float  # in steps
    dropout: float
    lrn: bool
    shuffle: str
    brightness: float
    contrast: float
    saturation: float
    hue: float

    def as_dict(self) -> dict:
        return asdict(self)


def _check(ok: bool, key: str, value, need: str) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {need}, got {value!r}")


def resolve_recipe(cfg: DictConfig) -> Recipe:
    """Apply the seven toggles of Sec. 4.2.1 to `cfg.recipe`; raise ConfigError on bad values."""
    base = cfg.recipe
    _check(base.lr > 0, "recipe.lr", base.lr, "> 0")
    _check(base.batch_size >= 1, "recipe.batch_size", base.batch_size, ">= 1")
    _check(base.steps >= 1, "recipe.steps", base.steps, ">= 1")
    _check(base.momentum >= 0, "recipe.momentum", base.momentum, ">= 0")
    _check(base.weight_decay >= 0, "recipe.weight_decay", base.weight_decay, ">= 0")
    _check(0 < base.lr_decay.gamma <= 1, "recipe.lr_decay.gamma", base.lr_decay.gamma, "in (0, 1]")
    _check(base.lr_decay.every_steps > 0, "recipe.lr_decay.every_steps", base.lr_decay.every_steps, "> 0")
    _check(0 <= base.dropout < 1, "recipe.dropout", base.dropout, "in [0, 1)")
    for k, v in base.distortion.items():
        _check(v >= 0, f"recipe.distortion.{k}", v, ">= 0")

    # (1) Increase the learning rate: a multiple of the baseline's initial rate.
    _check(cfg.lr.scale > 0, "lr.scale", cfg.lr.scale, "> 0")
    lr = base.lr * cfg.lr.scale
    # (2) Remove dropout.
    dropout = base.dropout if cfg.dropout.keep else 0.0
    # (3) Reduce the L2 weight regularization (by 5 in the paper): a factor on the baseline's.
    _check(cfg.l2.factor >= 0, "l2.factor", cfg.l2.factor, ">= 0")
    weight_decay = base.weight_decay * cfg.l2.factor
    # (4) Accelerate the exponential learning-rate decay (6x in the paper).
    _check(cfg.lr_decay.speedup > 0, "lr_decay.speedup", cfg.lr_decay.speedup, "> 0")
    decay_every = base.lr_decay.every_steps / cfg.lr_decay.speedup
    # (5) Remove local response normalization (where the baseline has it).
    lrn = base.lrn and cfg.lrn.keep
    # (6) Shuffle training examples more thoroughly.
    shuffle = plain(cfg.shuffle.mode)
    _check(shuffle in MODES, "shuffle.mode", shuffle, f"one of {MODES}")
    # (7) Reduce the photometric distortions: a factor on the baseline's strengths.
    _check(cfg.distort.factor >= 0, "distort.factor", cfg.distort.factor, ">= 0")
    d = {k: v * cfg.distort.factor for k, v in base.distortion.items()}

    return Recipe(
        batch_size=base.batch_size,
        steps=base.steps,
        lr=lr,
        momentum=base.momentum,
        nesterov=base.nesterov,
        weight_decay=weight_decay,
        decay_gamma=base.lr_decay.gamma,
        decay_every=decay_every,
        dropout=dropout,
        lrn=lrn,
        shuffle=shuffle,
        brightness=d["brightness"],
        contrast=d["contrast"],
        saturation=d["saturation"],
        hue=d["hue"],
    )
