"""Exact resume: a killed run, started again with the same command, ends as if never killed
(README, "Killed runs resume").

A run's checkpoints live in `<paths.checkpoints>/<variant>_s<seed>_<run id>/last.ckpt`: the
run id is a hash of the config and the code, so the same command (or a relaunched study)
finds them, and another config or commit never does. A checkpoint is taken at an evaluation
(after it is recorded) once `run.checkpoint.every_s` seconds of training have passed since
the last (0: at every evaluation), and holds, besides what Lightning saves (weights, optimizer
and schedule, loop counters, the data stream's position: data/position.py):

* every random generator in use, of every rank: torch's (CPU and each CUDA device), numpy's
  and Python's, as plain tensors and numbers so the file loads with `weights_only=True`;
* the tracker's curves, probes and times (callbacks/tracker.py);
* the W&B run id, so the resumed run continues the same W&B run;
* the steps at which the run was resumed before (the record's `resumed_at`).

The file is written under a temporary name, fsynced and renamed, so a kill during a write
leaves the previous checkpoint whole (temporary files are swept at the next start). When the
run ends (completed, diverged or failed; its record written) the folder is removed, or, with
`run.checkpoint.keep=true`, the last checkpoint moves beside the record as `last.ckpt`.

Random state is captured at the checkpoint (the end of an evaluation) and put back when
training restarts (`on_train_start`): nothing draws random numbers in between in either run.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from bnbench.faults import fault_point
from bnbench.results.store import TMP_SUFFIX, fsync_dir

log = logging.getLogger("bnbench")

CHECKPOINT = "last.ckpt"


# --- random state, as plain tensors and numbers ---------------------------------------------


def capture_rng() -> dict:
    """This process's random generators, in a form `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(state), "gauss": py_gauss},
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def gather_rng(trainer: pl.Trainer) -> list[dict]:
    """Every rank's generators, in rank order (rank 0 alone writes the checkpoint)."""
    mine = capture_rng()
    if trainer.world_size == 1:
        return [mine]
    every: list = [None] * trainer.world_size
    torch.distributed.all_gather_object(every, mine)
    return every


# --- where a run's checkpoints are --------------------------------------------------------------


def checkpoint_dir(root: str | Path, run_name: str) -> Path:
    return Path(root) / run_name


def resumable(folder: Path) -> Path | None:
    """The checkpoint to resume from, if a killed attempt left one; half-written ones (a kill
    during a write) are removed."""
    if not folder.is_dir():
        return None
    for tmp in folder.glob(f".*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
    path = folder / CHECKPOINT
    return path if path.is_file() else None


def read_state(path: Path) -> dict:
    """The bnbench part of a checkpoint (W&B id, steps resumed at), read before the run starts."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    state = ckpt.get("callbacks", {}).get(Checkpointer.__qualname__)
    if state is None:
        raise ValueError(f"{path} is not a bnbench checkpoint (no {Checkpointer.__qualname__} state)")
    return {**state, "step": ckpt.get("global_step", 0)}


def finish(folder: Path, keep_in: Path | None) -> None:
    """The run has its record: drop its checkpoints, or keep the last beside the record."""
    path = folder / CHECKPOINT
    if keep_in is not None and path.is_file():
        keep_in.mkdir(parents=True, exist_ok=True)
        os.replace(path, keep_in / CHECKPOINT)
    shutil.rmtree(folder, ignore_errors=True)


# --- the callback --------------------------------------------------------------------------------


class Checkpointer(pl.Callback):
    """Takes the checkpoints (every rank calls in: Lightning's save is collective) and carries
    bnbench's part of them. `every_s=None`: no checkpoints."""

    def __init__(self, folder: Path, every_s: float | None, run_id: str):
        self.folder, self.every_s, self.run_id = Path(folder), every_s, run_id
        self.resumed_at: list[int] = []
        self.wandb_id: str | None = None
        self.saved = 0
        self._rng: list[dict] | None = None  # to save (all ranks) / to restore (all ranks)
        self._last_s = 0.0  # training seconds at the last checkpoint
        self._clock = None  # the tracker's training clock (train_s)

    @property
    def state_key(self) -> str:
        return type(self).__qualname__

    def watch(self, clock) -> None:
        """`clock()`: seconds of training so far (the tracker's, which excludes evaluation)."""
        self._clock = clock

    def state_dict(self) -> dict:
        return {"run_id": self.run_id, "wandb_id": self.wandb_id, "resumed_at": list(self.resumed_at),
                "rng": self._rng or []}

    def load_state_dict(self, state: dict) -> None:
        if state["run_id"] != self.run_id:
            raise ValueError(f"checkpoint of run {state['run_id']} offered to run {self.run_id}")
        self.resumed_at = [*state["resumed_at"]]
        self.wandb_id = state["wandb_id"]
        self._rng = state["rng"]

    def on_train_start(self, trainer, pl_module):
        if self._rng:  # resuming: this rank's generators as they were at the checkpoint
            restore_rng(self._rng[trainer.global_rank])
            self.resumed_at.append(trainer.global_step)
            self._rng = None
        self._last_s = self._clock() if self._clock else 0.0

    def _due(self, trainer) -> bool:
        if self.every_s is None or trainer.sanity_checking or trainer.state.fn != "fit":
            return False
        if trainer.should_stop or trainer.global_step >= trainer.max_steps:
            return False  # the run is ending (its last step, or diverged): the record follows
        due = self._clock is None or self._clock() - self._last_s >= self.every_s
        # every rank must take the same decision (the save is collective): rank 0's clock decides
        return bool(trainer.strategy.broadcast(due, src=0))

    def on_validation_end(self, trainer, pl_module):
        if not self._due(trainer):
            return
        if trainer.is_global_zero and isinstance(trainer.logger, pl.loggers.WandbLogger):
            self.wandb_id = trainer.logger.version
        self._rng = gather_rng(trainer)
        self.save(trainer)
        self._rng = None
        self._last_s = self._clock() if self._clock else 0.0

    def save(self, trainer) -> None:
        """Lightning's checkpoint (with this callback's state) under a temporary name, then
        renamed over the last one, durably."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{CHECKPOINT}.{os.getpid()}{TMP_SUFFIX}"
        t0 = time.perf_counter()
        trainer.save_checkpoint(tmp, weights_only=False)  # collective; rank 0 writes
        if trainer.is_global_zero:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            fault_point("checkpoint-written", 0)  # tests: a kill between writing and renaming
            os.replace(tmp, self.folder / CHECKPOINT)
            fsync_dir(self.folder)
            log.debug("checkpoint at step %d in %.2fs", trainer.global_step, time.perf_counter() - t0)
        trainer.strategy.barrier("bnbench-checkpoint")
        self.saved += 1
        fault_point("checkpoint-saved", trainer.global_rank)
