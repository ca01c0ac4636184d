"""Everything checked before a run starts, so that bad input fails in one line with nothing
written: the CLI runs it on `bnbench train`'s config before Hydra starts the job, and the
study sweeper on every job of a study before any runs.

    check_config  the schema's ranges and keys (bnbench.schema.check_schema); the recipe and
                  the seven toggles (bnbench.recipe.resolve_recipe); the step budget; Trainer
                  intervals Lightning would divide by; the study's folder names; then the
                  untyped groups (data, model, trainer) against their class's signature: no
                  unknown or bnbench-set argument, simple types (int, float, bool, str) as
                  annotated. All but the last need neither torch nor Lightning, so a bad value
                  is reported in under a second (importing Lightning takes ~4-5 s)
    preflight     check_config, then build the run (bnbench.train.build), then load its data
                  once (a missing, corrupt or short data file fails here, not in the job)
    check_writable  an output folder accepts files (also used by the job and the study sweeper)
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import tempfile
import types
import typing
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from bnbench.errors import ConfigError
from bnbench.recipe import resolve_recipe
from bnbench.schema import LOGGER_MODES, UNTYPED, check_schema

# Hydra's instantiate keys, not arguments
HYDRA_KEYS = {"_target_", "_args_", "_recursive_", "_convert_", "_partial_"}
# Arguments bnbench passes itself (bnbench.train): a config value would be silently replaced.
SET_BY_BNBENCH = {
    "data": {"shuffle": "the shuffle group (shuffle=...)", "seed": "seed"},
    "model": {"in_shape": "the data", "num_classes": "the data", "norm_layer": "the norm group (norm=...)",
              "dropout": "recipe.dropout and the dropout group", "lrn": "recipe.lrn and the lrn group"},
    "trainer": {"logger": "the logger group (logger=...)", "callbacks": "bnbench",
                "default_root_dir": "hydra.run.dir / hydra.sweep.dir"},
}
_SIMPLE = (int, float, bool, str, type(None))
_data_checked: set[str] = set()


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError (one line, naming the key) for anything the composition let through."""
    check_values(cfg)
    # Last: the signatures need the classes imported, and with them Lightning (~5 s); a bad value
    # is reported before that, in under a second.
    for group in UNTYPED:
        check_arguments(cfg, group)


def check_values(cfg: DictConfig) -> None:
    """check_config's checks that import neither torch nor Lightning: a sweep runs them on every
    job first, so that a bad value in its last job is reported at once."""
    check_schema(cfg)
    if cfg.logger.kind == "wandb":
        try:
            cfg.logger.mode  # an interpolation (${oc.env:WANDB_MODE,offline}): checked when read
        except Exception as e:  # OmegaConf's ValidationError: an unknown mode
            env = os.environ.get("WANDB_MODE")
            if env is not None and env not in LOGGER_MODES:
                raise ConfigError(f"logger.mode comes from the environment, WANDB_MODE={env!r}, which is not one of "
                                  f"{', '.join(LOGGER_MODES)} (set WANDB_MODE or logger.mode to one)") from None
            raise ConfigError(f"logger.mode: {str(e).splitlines()[0]}") from None
    resolve_recipe(cfg)  # the recipe's and the seven toggles' values
    check_steps(cfg)
    check_trainer_counts(cfg.trainer)
    for key in ("name", "launch", "variant"):  # each a folder of <paths.results>/<study>/<launch>/<variant>_s<seed>_...
        value = cfg.study[key]
        if value is None and key == "variant":
            continue
        if not str(value).strip() or "/" in str(value) or str(value) in (".", ".."):
            raise ConfigError(f"study.{key}={value!r} must be a folder name: not empty, no '/' "
                              "(records go to <paths.results>/<study.name>/<study.launch>/)")


def check_steps(cfg: DictConfig) -> None:
    """A run trains at least one step: its record holds the accuracy at the end of training."""
    steps = cfg.trainer.get("max_steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"trainer.max_steps={steps}: a run trains for at least one optimizer step "
                          "(a positive number; it defaults to recipe.steps)")


def check_trainer_counts(trainer: DictConfig) -> None:
    """Trainer arguments Lightning takes as they are and later divides by (a ZeroDivisionError
    in the middle of the run): intervals of steps."""
    every = trainer.get("log_every_n_steps")
    if isinstance(every, int) and not isinstance(every, bool) and every < 1:
        raise ConfigError(f"trainer.log_every_n_steps must be >= 1, got {every}")
    interval = trainer.get("val_check_interval")
    if isinstance(interval, bool):
        return
    if isinstance(interval, int) and interval < 1 or isinstance(interval, float) and not 0 < interval <= 1:
        raise ConfigError(f"trainer.val_check_interval must be a number of steps >= 1 (it defaults to run.eval_every) "
                          f"or a fraction of an epoch in (0, 1], got {interval}")


def check_writable(path, key: str) -> None:
    """Fail now, not after training: `path` accepts new files, or, if it does not exist yet, its
    nearest existing ancestor does (where it will be created). A probe file is created there and
    removed: nothing is left behind."""
    path = Path(path).absolute()
    at = path
    while not at.exists() and at != at.parent:  # exists() is False under a regular file, too
        at = at.parent
    if not at.is_dir():
        raise ConfigError(f"{key}={path} cannot be written: {at} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=at, prefix=".bnbench-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{key}={path} is not writable ({e.strerror or e}: {at})") from None


def check_arguments(cfg: DictConfig, group: str) -> None:
    """`cfg[group]` holds arguments of its `_target_`: each must be one of its parameters, not
    one bnbench sets itself, and of the annotated type where that is a simple one."""
    node = cfg.get(group)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    target = node._target_
    from hydra.utils import get_object

    try:
        obj = get_object(target)
        params = inspect.signature(obj).parameters
    except Exception as e:
        raise ConfigError(f"{group}._target_={target}: cannot be loaded ({type(e).__name__}: {e})") from None
    try:
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except Exception:  # annotations that do not evaluate: leave the types to the class
        hints = {}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    names = [n for n, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in SET_BY_BNBENCH.get(group, {})]
    for name, p in params.items():  # a required argument the config lacks (~data.root)
        if (p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and name not in node and name not in SET_BY_BNBENCH.get(group, {})):
            raise ConfigError(f"{group}.{name} is required by {target} and missing from the {group} config")
    for key in node:
        key = str(key)
        if key in HYDRA_KEYS:
            continue
        if key in SET_BY_BNBENCH.get(group, {}):
            raise ConfigError(f"{group}.{key} is set by bnbench from {SET_BY_BNBENCH[group][key]}, "
                              f"not in the {group} config")
        if key not in params:
            if open_ended:
                continue
            close = difflib.get_close_matches(key, names, n=3)
            hint = f"; did you mean {' or '.join(f'{group}.{c}' for c in close)}?" if close else (
                f" (its arguments: {', '.join(names)})" if len(names) <= 12 else "")
            raise ConfigError(f"{group}.{key} is not an argument of {target}{hint}")
        if key in hints:
            value = node[key]
            if not _accepts(hints[key], value):
                shown = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
                raise ConfigError(f"{group}.{key}={shown!r} is not {_describe(hints[key])} "
                                  f"(argument {key} of {target})")


def _union(hint) -> tuple | None:
    """The member types of a simple annotation (int, str | None, Optional[float]...), else None."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return args if all(a in _SIMPLE for a in args) else None


def _accepts(hint, value) -> bool:
    args = _union(hint)
    if args is None:
        return True  # not a simple type: the class checks it
    for a in args:
        if value is None and a is type(None):
            return True
        if a is bool and isinstance(value, bool):
            return True
        if a is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if a is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if a is str and isinstance(value, str):
            return True
    return False


def _describe(hint) -> str:
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string (quote it)",
             type(None): "null"}
    return " or ".join(words[a] for a in _union(hint))


def check_data(datamodule, data: DictConfig) -> None:
    """Load the data once (Lightning's `setup`): a missing, corrupt or truncated file, or a batch
    larger than the training set, fails now. A study's jobs share their data: each distinct data
    config is loaded once per process."""
    key = json.dumps(OmegaConf.to_container(data, resolve=True), sort_keys=True, default=str)
    if key in _data_checked:
        return
    datamodule.setup("fit")
    _data_checked.add(key)


def preflight(cfg: DictConfig):
    """check_config, build (bnbench.train.build), check_data: the run's parts, or a
    BnbenchError naming the key, value or file."""
    check_config(cfg)
    from bnbench.train import build  # Lightning: after the checks that need none

    parts = build(cfg)
    check_data(parts.datamodule, cfg.data)
    return parts
