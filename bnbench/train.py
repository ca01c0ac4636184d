"""One training run: compose -> build -> fit -> record.

`run(cfg)` is the Hydra task function behind `bnbench train` and every job of a study.
Problems with the input (config values, data files, an unwritable results or outputs
directory) raise BnbenchError from `build` (and `run`) before anything is written or trained.
A run that starts ends with a record: completed, diverged (non-finite or exploding loss), or
failed (an exception, re-raised after the record). If the record cannot be written where it
belongs (disk full, the directory removed mid-run), it goes to the job's output folder, else a
temporary folder, and one WARNING line says where. An interrupted run (Ctrl-C) leaves none;
SIGKILL cannot leave one either; both leave the run's last checkpoint, from which the same
command resumes it exactly (bnbench/checkpoint.py).

Every run ends with an evaluation at its last step (`final_acc`), whether or not the last step
is a multiple of `run.eval_every` (bnbench.callbacks.final_eval).

Every evaluation covers two sets (bnbench.keys.EVAL_SETS): the validation set, held out of the
training set (bnbench/data/split.py), on which everything is selected (best step, steps to
target), and the test set, reported beside it (`test_acc_at_best`, `final_test_acc`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf

from bnbench.callbacks.final_eval import FinalEvaluation
from bnbench.callbacks.progress import StepProgressBar
from bnbench.callbacks.sigterm import SigtermWithoutCollectives, under_submitit
from bnbench.callbacks.sync_stats import AverageRunningStats
from bnbench.callbacks.tracker import QUANTILES, RunTracker
from bnbench.checkpoint import Checkpointer, checkpoint_dir, read_state, resumable
from bnbench.checkpoint import finish as finish_checkpoints
from bnbench.data.distort import build_distortion
from bnbench.data.ordering import co_batch_rate
from bnbench.errors import ConfigError
from bnbench.faults import fault_point, step_faults
from bnbench.loggers import build_logger, finish_logger
from bnbench.nn.norm import create_norm
from bnbench.nn.population import estimate_population_statistics
from bnbench.nn.sync import average_running_stats
from bnbench.parallel import (ProcessPlan, RunContext, gpu_placement, launch_workers, leave_process_group,
                              plan_processes, trainer_arguments)
from bnbench.preflight import check_steps, check_writable
from bnbench.recipe import Recipe, resolve_recipe
from bnbench.results.env import code_version, fingerprint
from bnbench.results.record import SCHEMA_VERSION, Curves, Record
from bnbench.results.store import RECORD, run_folder, write_run
from bnbench.results.targets import reach_table
from bnbench.system import Classifier

log = logging.getLogger("bnbench")

# Keys that do not change what a run computes, left out of its identity.
IDENTITY_EXCLUDES = ("paths", "logger", "study", "run.threads", "run.checkpoint", "run.resume",
                     "trainer.enable_progress_bar")


@dataclass
class Parts:
    recipe: Recipe
    datamodule: pl.LightningDataModule
    system: Classifier


def build(cfg: DictConfig, plan: ProcessPlan | None = None) -> Parts:
    """Everything a run needs but the Trainer; raises BnbenchError on bad input."""
    plan = plan or plan_processes(cfg)
    recipe = resolve_recipe(cfg)
    check_steps(cfg)
    check_writable(to_absolute_path(cfg.paths.results), "paths.results")
    if cfg.run.checkpoint.every_s is not None:
        check_writable(to_absolute_path(cfg.paths.checkpoints), "paths.checkpoints")
    norm = cfg.norm
    norm_layer = create_norm(**norm)  # checks norm.* first: batch_sizes reads norm.ghost_size
    batches = batch_sizes(cfg, plan)
    if norm.kind == "batch" and batches["norm_batch"] < 2:
        raise ConfigError(
            f"norm=batch normalizes over {batches['norm_batch']} example(s) per batch (data.batch_size="
            f"{cfg.data.batch_size} over {plan.world_size} process(es), norm.stats={norm.get('stats', 'device')}): "
            "the statistics of a one-example batch are undefined (var_B = 0)"
        )
    datamodule = instantiate(cfg.data, shuffle=recipe.shuffle, seed=cfg.seed)
    model = instantiate(
        cfg.model, in_shape=datamodule.in_shape, num_classes=datamodule.num_classes,
        norm_layer=norm_layer, dropout=recipe.dropout, lrn=recipe.lrn,
    )
    distortion = build_distortion(datamodule.channels, recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue)
    channels_last = cfg.run.channels_last
    if channels_last is None:  # auto; the config stays null (it is part of the run's identity)
        channels_last = resolve_channels_last(cfg, model)
    steps_per_batch = resolve_steps_per_batch(cfg, plan, datamodule)
    if steps_per_batch > 1:
        datamodule.steps_per_batch = steps_per_batch
    system = Classifier(model, recipe, datamodule.num_classes, distortion, cfg.run.max_loss, cfg.run.check_every,
                        channels_last, steps_per_batch)
    check_trainer(cfg, plan, steps_per_batch)
    return Parts(recipe, datamodule, system)


MAX_STEPS_PER_BATCH = 50  # auto: Lightning's ~0.25 ms a batch is then ~5 us a step (README, "Speed")


def resolve_steps_per_batch(cfg: DictConfig, plan: ProcessPlan, datamodule) -> int:
    """`run.steps_per_batch` (optimizer steps per Lightning batch, bnbench/data/groups.py): null
    (auto) takes the largest k <= 50 that divides trainer.max_steps, trainer.val_check_interval
    and trainer.log_every_n_steps, on one process with in-memory data, else 1. The same config
    resolves the same k everywhere (the config keeps null: part of the run's identity). A k the
    run cannot take is a ConfigError naming what stands in the way."""
    k, trainer = cfg.run.get("steps_per_batch"), cfg.trainer
    counts = {f"trainer.{key}": trainer.get(key) for key in ("max_steps", "val_check_interval", "log_every_n_steps")}
    obstacles = []
    if plan.world_size > 1 or plan.ddp:
        obstacles.append(f"it runs {plan.world_size} process(es) under DDP, which syncs gradients once per "
                         "forward pass of its wrapper")
    if not hasattr(type(datamodule), "steps_per_batch"):
        obstacles.append(f"its data module ({type(datamodule).__name__}) does not group batches (in-memory data "
                         "does: data=fashion_mnist, data=mnist)")
    for key, plain in (("accumulate_grad_batches", 1), ("gradient_clip_val", None)):
        if trainer.get(key, plain) not in (None, plain):
            obstacles.append(f"trainer.{key}={trainer.get(key)} (Lightning's manual optimization, which takes the "
                             "grouped steps, does not apply it)")
    # Lightning's epochs and batch limits count its batches, and a grouped stream has no epochs
    for key, plain in (("max_epochs", -1), ("min_epochs", 0), ("check_val_every_n_epoch", None),
                       ("limit_train_batches", 1.0)):
        if trainer.get(key, plain) not in (None, plain):
            obstacles.append(f"trainer.{key}={trainer.get(key)} (counts Lightning's batches or epochs)")
    whole = {key: v for key, v in counts.items() if isinstance(v, int) and not isinstance(v, bool)}
    if len(whole) < len(counts):
        obstacles.append(", ".join(f"{key}={v}" for key, v in counts.items() if key not in whole)
                         + " (whole numbers of steps needed)")
    if k is None:
        if obstacles:
            return 1
        g = math.gcd(*whole.values())
        return max(d for d in range(1, MAX_STEPS_PER_BATCH + 1) if g % d == 0)
    if k > 1:
        obstacles += [f"{key}={v} is not a multiple of it" for key, v in whole.items() if v % k]
        if obstacles:
            raise ConfigError(f"run.steps_per_batch={k} cannot be taken: " + "; ".join(obstacles))
    return k


def resolve_channels_last(cfg: DictConfig, model: torch.nn.Module) -> bool:
    """`run.channels_last: null` (auto): NHWC for a model with 2-d convolutions trained on CPU,
    where oneDNN's NHWC convolutions measured faster (inception_mini, one thread: 1.3x per
    training step, 1.6x per evaluation; README, "Speed"); NCHW on GPUs, not measured there (set
    it true with bf16 and tensor cores). A record says which through its config (null), its
    device (`env.device`) and its model."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    return on_cpu and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def batch_sizes(cfg: DictConfig, plan: ProcessPlan) -> dict:
    """The run's batch semantics (README, "Multi-device and clusters"): `data.batch_size` (from
    `recipe.batch_size`) is the global batch; each of the world's processes trains on an equal
    slice of it; BN normalizes over the slice (`norm.stats=device`), the whole global batch
    (`global`) or `norm.ghost_size` examples (`ghost`)."""
    global_batch, world = cfg.data.batch_size, plan.world_size
    if global_batch % world:
        raise ConfigError(f"data.batch_size={global_batch} (the global batch, from recipe.batch_size) is not divisible "
                          f"by the {world} processes of trainer.devices x trainer.num_nodes")
    per_device = global_batch // world
    stats, ghost = cfg.norm.get("stats", "device"), cfg.norm.get("ghost_size")
    if stats == "ghost" and isinstance(ghost, int) and ghost >= 1 and per_device % ghost:
        raise ConfigError(f"norm.ghost_size={ghost} does not divide the per-device batch of {per_device} "
                          f"(data.batch_size={global_batch} over {world} process(es))")
    norm_batch = {"global": global_batch, "ghost": ghost}.get(stats, per_device) if cfg.norm.kind == "batch" else None
    return {"devices": world, "batch_per_device": per_device, "global_batch": global_batch, "norm_batch": norm_batch}


def grouped_trainer_arguments(cfg: DictConfig, steps_per_batch: int) -> dict:
    """Lightning counts evaluation intervals in batches: with k steps a batch, a k-th as many."""
    if steps_per_batch == 1:
        return {}
    return {"val_check_interval": cfg.trainer.val_check_interval // steps_per_batch}


def check_trainer(cfg: DictConfig, plan: ProcessPlan, steps_per_batch: int = 1) -> None:
    """Lightning checks its arguments (max_steps, accelerator, precision...) when the Trainer is
    built: build one, without logger or callbacks, so a bad `trainer.*` value is a config error."""
    quiet_lightning()
    try:
        instantiate(cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False, enable_checkpointing=False,
                    **trainer_arguments(plan), **grouped_trainer_arguments(cfg, steps_per_batch))
    except Exception as e:  # Lightning raises MisconfigurationException, ValueError, TypeError...
        raise ConfigError(f"trainer: {' '.join(str(e).split())}") from None


def run_identity(cfg: DictConfig) -> str:
    """A run's id: a hash of its resolved config (minus IDENTITY_EXCLUDES) and code version."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    for key in IDENTITY_EXCLUDES:
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    resolved = OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    blob = json.dumps({"config": resolved, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def choices() -> dict:
    """The Hydra group choices of this job (data, model, norm, the seven toggles, ...)."""
    if not HydraConfig.initialized():
        return {}
    return {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra/")}


def accuracy(system: Classifier, batches) -> float:
    """Accuracy of `system`'s model over `batches` (one evaluation set), each batch taken to the
    model's device and prepared as in training (Classifier.model_input); under several processes,
    each passes its own block of the set and the counts are summed over ranks."""
    model, device = system.model, system.device
    model.eval()
    counts = torch.zeros(2, dtype=torch.float64, device=device)  # [correct, total], read once at the end
    with torch.no_grad():
        for x, y in batches:
            counts[0] += (model(system.model_input(x)).argmax(1) == y.to(device)).sum()
            counts[1] += len(y)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(counts)
    return (counts[0] / counts[1]).item()


def quiet_lightning() -> None:
    """Lightning's per-fit banners (GPU available, tips) and warnings that do not apply here
    (in-memory batch streams; on-device distortions in the module by design), repeated by
    every job of a study. The record keeps the device."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    # Lightning's hint on any machine with SLURM's client installed; bnbench picks the cluster
    # environment itself (bnbench/parallel.py)
    warnings.filterwarnings("ignore", message=".*The `srun` command is available on your system but is not used.*")


def co_batch(datamodule) -> float | None:
    """Sec. 4.2.1 (6), measured: of the example pairs sharing a mini-batch in epoch 0, the
    fraction sharing one again in epoch 1 (None for data without an epoch order)."""
    if not hasattr(datamodule, "train_order"):
        return None
    return co_batch_rate(datamodule.train_order(0), datamodule.train_order(1), datamodule.batch_size)


def make_record(cfg, ctx: RunContext, plan: ProcessPlan, parts: Parts, trainer, tracker: RunTracker, status: str,
                error, final: dict, started: datetime, wall_s: float, resumed_at: list[int] | None = None) -> Record:
    """The run's record, its curves attached (fields: README, "Results"). Selection (best step,
    steps and time to target) reads the validation curve, `acc`; test accuracies are read at the
    steps it chose. `final`: final_acc, final_test_acc (and their _ema twins, population_batches)
    of train_process."""
    curve = tracker.curve
    accs = [a for a in curve["acc"] if a is not None]
    best = max(range(len(curve["acc"])), key=lambda i: curve["acc"][i] or -1.0) if accs else None
    targets = list(cfg.run.targets)
    return Record(
        schema=SCHEMA_VERSION,
        run_id=ctx.run_id,
        status=status,
        error=error,
        study=cfg.study.name,
        launch=cfg.study.launch,
        variant=cfg.study.variant,
        seed=cfg.seed,
        choices=ctx.choices,
        overrides=ctx.overrides,
        recipe=parts.recipe.as_dict(),
        num_classes=parts.datamodule.num_classes,
        co_batch_rate=co_batch(parts.datamodule),
        # optimizer steps; batches: README, "Multi-device and clusters"
        **batch_sizes(cfg, plan),
        launcher=plan.mode,
        steps_per_batch=parts.system.steps_per_batch,
        steps=trainer.global_step,
        max_steps=trainer.max_steps,
        diverged_at=parts.system.diverged_at,
        **parts.datamodule.split_sizes(),
        best_acc=curve["acc"][best] if best is not None else None,
        best_step=curve["step"][best] if best is not None else None,
        test_acc_at_best=curve["test_acc"][best] if best is not None else None,
        **final,
        targets=targets,
        steps_to_target=reach_table(curve["step"], curve["acc"], targets),
        time_to_target=reach_table(curve["train_s"], curve["acc"], targets),
        train_s=tracker.train_s,
        eval_s=tracker.eval_s,
        train_cpu_s=tracker.train_cpu_s,
        wall_s=wall_s,
        started=started.isoformat(timespec="seconds"),
        # the trainer's device: Lightning moves the module back to the CPU when fit ends
        env=fingerprint(trainer.strategy.root_device),
        config=OmegaConf.to_container(cfg, resolve=True),
        output_dir=ctx.output_dir,
        resumed_at=list(resumed_at or []),
        curves=Curves.from_json({**curve, "probe_quantiles": list(QUANTILES), "probe": tracker.probe,
                                 "probe_step": tracker.probe_step}),
    )


def run_label(cfg: DictConfig) -> str:
    return f"{cfg.study.variant or 'run'}_s{cfg.seed}"


def record_dir(cfg: DictConfig, run_id: str | None = None) -> Path:
    """Where a run's record goes: <paths.results>/<study>/<launch>/<variant>_s<seed>_<run id>."""
    run_id = run_id or run_identity(cfg)
    return (Path(to_absolute_path(cfg.paths.results)) / cfg.study.name / cfg.study.launch
            / run_folder(cfg.study.variant, cfg.seed, run_id))


def run(cfg: DictConfig) -> dict | None:
    """The Hydra task function: one job = one run = one record (returned as JSON, without its
    curves), on one process or N."""
    quiet_lightning()
    plan = plan_processes(cfg)
    run_id = run_identity(cfg)
    output_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else str(record_dir(cfg, run_id))
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    ctx = RunContext(run_id, output_dir, choices(), overrides)
    if HydraConfig.initialized():  # Hydra made it; the W&B files and a fallback record go there
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        check_writable(output_dir, "hydra.sweep.dir" if multirun else "hydra.run.dir")
        ctx.job_num = HydraConfig.get().job.num if multirun else None
    if plan.mode != "spawn":
        return train_process(cfg, ctx, plan)
    build(cfg, plan)  # bad input fails here, before any process starts
    return launch_workers(cfg, ctx, plan, record_dir(cfg, run_id) / RECORD)


def train_process(cfg: DictConfig, ctx: RunContext, plan: ProcessPlan) -> dict | None:
    """Train on this process (one of `plan.world_size`); rank 0 writes the record and returns it."""
    quiet_lightning()
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)  # joblib's workers are reused: set it every job
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = build(cfg, plan)
    label = run_label(cfg)
    run_dir = record_dir(cfg, ctx.run_id)
    output_dir = Path(ctx.output_dir)
    model = parts.system.model
    probe = parts.datamodule.fixed_batch(cfg.run.probe_batch) if hasattr(model, "probe_point") and plan.is_zero else None
    bar = cfg.trainer.enable_progress_bar
    bar = sys.stderr.isatty() and plan.is_zero if bar is None else bar  # null: a bar on a terminal, else log lines
    tracker = RunTracker(label, probe, progress_lines=not bar and plan.is_zero, test_at=cfg.run.test_at)
    parts.system.test_gate = tracker.wants_test
    folder = checkpoint_dir(to_absolute_path(cfg.paths.checkpoints), run_dir.name)
    checkpointer = Checkpointer(folder, cfg.run.checkpoint.every_s, ctx.run_id)
    checkpointer.watch(lambda: tracker.train_s)
    resume_from = resumable(folder) if cfg.run.resume else None
    resumed = read_state(resume_from) if resume_from else {}
    if resume_from and plan.is_zero:
        log.info("[%s] resuming from step %d (%s)", label, resumed["step"], resume_from)
    callbacks = [FinalEvaluation(), tracker, checkpointer] + ([StepProgressBar(refresh_rate=25)] if bar else [])
    if plan.world_size > 1:
        callbacks.append(AverageRunningStats())
    if under_submitit():  # submitit owns SIGTERM and preemption (bnbench.callbacks.sigterm)
        callbacks.append(SigtermWithoutCollectives())
    if (faults := step_faults()) is not None:
        callbacks.append(faults)
    logger = build_logger(cfg, ctx.run_id, ctx.choices, output_dir, resume_id=resumed.get("wandb_id")) \
        if plan.is_zero else None
    placement = {} if plan.ddp else gpu_placement(cfg.trainer, ctx.job_num)  # README, "Studies fill the machine"
    trainer = instantiate(cfg.trainer, logger=logger or False, callbacks=callbacks, enable_progress_bar=bar,
                          default_root_dir=str(output_dir), **trainer_arguments(plan), **placement,
                          **grouped_trainer_arguments(cfg, parts.system.steps_per_batch))

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    status, error = None, None
    final = dict.fromkeys(("final_acc", "final_test_acc", "final_acc_ema", "final_test_acc_ema", "population_batches"))
    try:
        trainer.fit(parts.system, datamodule=parts.datamodule, ckpt_path=resume_from, weights_only=True)
        if parts.system.diverged_at is not None:
            status = "diverged"
        else:
            if tracker.last_step != trainer.global_step:
                # Training ended before trainer.max_steps (trainer.max_epochs, max_time...), so
                # FinalEvaluation did not see the last step: evaluate now, on every rank.
                tracker.record_validate = True
                trainer.validate(parts.system, datamodule=parts.datamodule, verbose=False)
            status = "completed"
            if tracker.last_step == trainer.global_step:
                final.update(final_acc=tracker.curve["acc"][-1], final_test_acc=tracker.curve["test_acc"][-1])
            if final["final_acc"] is not None and cfg.norm.kind == "batch" and cfg.norm.inference == "population":
                # Alg. 2: replace the moving averages by population statistics (each rank over its
                # own batches, then averaged over ranks), then evaluate on both sets.
                final.update(final_acc_ema=final["final_acc"], final_test_acc_ema=final["final_test_acc"])
                system = parts.system
                system.to(trainer.strategy.root_device)  # Lightning's teardown left it on the CPU
                if getattr(parts.datamodule, "steps_per_batch", 1) > 1:
                    # Alg. 2 reads training batches, one epoch at most: the loader as k = 1 reads it
                    parts.datamodule.steps_per_batch = 1
                inputs = (system.model_input(x) for x, _ in parts.datamodule.train_dataloader())
                final["population_batches"] = estimate_population_statistics(model, inputs,
                                                                             cfg.norm.population_batches)
                average_running_stats(model)
                val, test = parts.datamodule.val_dataloader()  # bnbench.keys.EVAL_SETS
                final.update(final_acc=accuracy(system, val), final_test_acc=accuracy(system, test))
        fault_point("trained", plan.rank)
    except Exception as e:
        status, error = "failed", f"{type(e).__name__}: {e}"
        raise
    finally:
        if not plan.is_zero:
            pass  # rank 0 alone records the run
        elif status is None:  # interrupted (Ctrl-C, SystemExit): no record, nothing half-written
            finish_logger(logger, None, failed=True)
        else:
            record = make_record(cfg, ctx, plan, parts, trainer, tracker, status, error, final, started,
                                 time.perf_counter() - t0, checkpointer.resumed_at)
            data = record.to_json()
            path = save_record(run_dir, output_dir, data, data.pop("curves"))
            if status != "failed":  # a failed run keeps its checkpoint: started again, it resumes
                finish_checkpoints(folder, keep_in=path.parent if cfg.run.checkpoint.keep else None)
            finish_logger(logger, record, failed=status == "failed")
            best, test = (("n/a" if a is None else f"{a:.4f}") for a in (record.best_acc, record.test_acc_at_best))
            log.info("[%s] %s after %d steps: best val acc %s (test acc there %s), wall %.0fs -> %s", label, status,
                     record.steps, best, test, record.wall_s, path)
    leave_process_group()
    return data if plan.is_zero else None


def save_record(run_dir: Path, fallback_dir: Path, record: dict, curves: dict) -> Path:
    """Write a finished run's record and curves (JSON, from Record.to_json()) into `run_dir`. If
    that fails (disk full, the directory removed or replaced by a file while the run trained),
    the result is not lost: they go to `fallback_dir` (the job's Hydra output folder), else to a
    new temporary folder, and one WARNING line says where. Only if nothing at all can be written
    is the error raised, after logging the record itself."""
    try:
        return write_run(run_dir, record, curves)
    except OSError as e:
        problem = f"{type(e).__name__}: {e}"
    for where in (fallback_dir, None):
        try:
            if where is None or Path(where).absolute() == Path(run_dir).absolute():
                where = tempfile.mkdtemp(prefix=f"bnbench-{run_dir.name}-")
            path = write_run(Path(where), record, curves)
        except OSError:
            continue
        log.warning("could not write the record to %s (%s): record and curves written to %s instead",
                    run_dir, problem, path.parent)
        return path
    log.error("could not write the record anywhere (%s); the record: %s", problem,
              json.dumps(record, default=str, allow_nan=True))
    raise OSError(f"could not write the record of {run_dir.name} ({problem})")
