"""Weights & Biases, for real, offline unless WANDB_MODE=online (`logger=wandb`, the default).

Each job is one W&B run: `group` = the study, `job_type` = the variant, the resolved config
plus the Hydra group choices as its config (so dashboards can sort and group by them), and
the record's headline figures in its summary. `logger=none` turns W&B off; the local record
is written either way.

Online, W&B never holds a run up for long (README, "W&B server unreachable"). What wandb 0.31
did here against a closed port and a server that accepts connections but never answers:
`wandb.init` blocked for init_timeout (default 90 s) plus two account look-ups of 5 s each
outside that timeout (unless WANDB_SILENT), then raised CommError; and once the server went
silent mid-run, `wandb.finish` waited for the upload until the run was killed (after 90 s and
120 s: wandb's finish_timeout defaults to 0, no limit). So a run
starts within `logger.init_timeout` (the look-up is skipped), then logs offline or stops
(`logger.on_unreachable`), and its end waits at most `logger.finish_timeout`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from bnbench.errors import BnbenchError
from bnbench.keys import TEST_ACC, VAL_ACC
from bnbench.results.record import Record
from bnbench.schema import plain

log = logging.getLogger("bnbench")


def build_logger(cfg: DictConfig, run_id: str, choices: dict, output_dir: Path,
                 resume_id: str | None = None) -> WandbLogger | None:
    """The job's W&B run, started (`resume_id`: the W&B run a killed attempt of this run started,
    continued; bnbench/checkpoint.py). `logger.kind` and `logger.mode` are checked by the schema
    (bnbench/schema.py: LoggerKind, LoggerMode) when the config is composed, and before the run
    (bnbench.preflight). An online run that cannot start within `logger.init_timeout` logs
    offline instead, or raises BnbenchError (`logger.on_unreachable=fail`): before training,
    so no record is written."""
    lc = cfg.logger
    if lc.kind == "none":
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    mode = plain(lc.mode)
    if mode != "online":
        return _start(cfg, run_id, choices, output_dir, mode, resume_id)
    import wandb

    server = _online_setup()
    try:
        return _start(cfg, run_id, choices, output_dir, mode, resume_id)
    # CommError: unreachable, timed out, key refused; UsageError: no key; TimeoutError: wandb's
    # own service did not answer within its 10 s grace after init_timeout
    except (wandb.errors.Error, TimeoutError) as e:
        # wandb's first line names the request and why it failed; its second suggests its own setting
        problem = (f"W&B could not start an online run (server {server}, logger.init_timeout={lc.init_timeout:g}s): "
                   f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
    if plain(lc.on_unreachable) == "fail":
        raise BnbenchError(f"{problem} (logger.on_unreachable=fail; set it to offline to log offline instead)")
    logger = _start(cfg, run_id, choices, output_dir, "offline", resume_id)
    run_dir = Path(logger.experiment.dir).parent  # .../wandb/offline-run-<time>-<id>/files
    log.warning("%s; logging offline instead (logger.on_unreachable=offline) to %s; upload it later with "
                "`wandb sync %s`", problem, run_dir, run_dir)
    return logger


def _online_setup() -> str:
    """Prepare this process's wandb for an online run; return the server's address. Unless
    WANDB_SILENT, wandb's login looks the account up (for its "logged in as" line) before
    init_timeout starts, twice, 5 s each, even when the server does not answer (15.4 s measured
    for init_timeout=5): skip it. Process-wide, as a reused joblib worker keeps it anyway."""
    import wandb

    return wandb.setup(settings=wandb.Settings(x_disable_viewer=True)).settings.base_url


def _start(cfg: DictConfig, run_id: str, choices: dict, output_dir: Path, mode: str,
           resume_id: str | None = None) -> WandbLogger:
    import wandb

    lc = cfg.logger
    bounds = {"init_timeout": float(lc.init_timeout)}
    if lc.finish_timeout is not None:
        bounds["finish_timeout"] = float(lc.finish_timeout)  # then the run's end prints a warning and goes on
    variant = cfg.study.variant or "run"
    logger = WandbLogger(
        project=lc.project,
        entity=lc.entity,
        group=cfg.study.name,
        job_type=variant,
        name=f"{variant}_s{cfg.seed}_{run_id}",
        tags=[cfg.study.name, variant, *lc.tags],
        save_dir=str(output_dir),
        mode=mode,
        settings=wandb.Settings(**bounds),
        **({"id": resume_id, "resume": "allow"} if resume_id else {}),
        config={
            **OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
            "choices": choices,
            "run_id": run_id,
        },
    )
    logger.experiment.define_metric(VAL_ACC, summary="max")  # starts the run (wandb.init)
    logger.experiment.define_metric(TEST_ACC, summary="last")  # never a maximum: test is not selected on
    return logger


def finish_logger(logger: WandbLogger | None, record: Record | None, failed: bool) -> None:
    """Put the record's figures in the W&B summary and close the run (WandbLogger never does,
    and a second wandb.init() in a reused joblib worker would otherwise continue this run).
    `record` is None for an interrupted run: it is closed as failed, with no summary. Online,
    closing waits for the upload at most `logger.finish_timeout` (set when the run started)."""
    if logger is None:
        return
    import wandb

    if record is None:
        wandb.finish(exit_code=1)
        return
    run = logger.experiment
    run.summary.update({
        "status": record.status,
        "best_acc": record.best_acc,  # validation
        "best_step": record.best_step,
        "test_acc_at_best": record.test_acc_at_best,
        "final_acc": record.final_acc,
        "final_test_acc": record.final_test_acc,
        "val_size": record.val_size,
        "test_size": record.test_size,
        "steps": record.steps,
        "diverged_at": record.diverged_at,
        "steps_to_target": record.steps_to_target,
        "time_to_target": record.time_to_target,
        "train_s": record.train_s,
        "train_cpu_s": record.train_cpu_s,
        "wall_s": record.wall_s,
    })
    wandb.finish(exit_code=1 if failed else 0)
