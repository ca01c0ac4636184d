"""Weights & Biases, for real, offline unless WANDB_MODE=online (`logger=wandb`, the default).

Each job is one W&B run: `group` = the study, `job_type` = the variant, the resolved config
plus the Hydra group choices as its config (so dashboards can sort and group by them), and
the record's headline figures in its summary. `logger=none` turns W&B off; the local record
is written either way.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from bnbench.keys import VAL_ACC
from bnbench.schema import plain


def build_logger(cfg: DictConfig, run_id: str, choices: dict, output_dir: Path) -> WandbLogger | None:
    """`logger.kind` and `logger.mode` are checked by the schema (bnbench/schema.py: LoggerKind,
    LoggerMode) when the config is composed, and before the run (bnbench.preflight)."""
    lc = cfg.logger
    if lc.kind == "none":
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    variant = cfg.study.variant or "run"
    logger = WandbLogger(
        project=lc.project,
        entity=lc.entity,
        group=cfg.study.name,
        job_type=variant,
        name=f"{variant}_s{cfg.seed}_{run_id}",
        tags=[cfg.study.name, variant, *lc.tags],
        save_dir=str(output_dir),
        mode=plain(lc.mode),
        config={
            **OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
            "choices": choices,
            "run_id": run_id,
        },
    )
    logger.experiment.define_metric(VAL_ACC, summary="max")
    return logger


def finish_logger(logger: WandbLogger | None, record: dict | None, failed: bool) -> None:
    """Put the record's figures in the W&B summary and close the run (WandbLogger never does,
    and a second wandb.init() in a reused joblib worker would otherwise continue this run).
    `record` is None for an interrupted run: it is closed as failed, with no summary."""
    if logger is None:
        return
    import wandb

    if record is None:
        wandb.finish(exit_code=1)
        return
    run = logger.experiment
    run.summary.update({
        "status": record["status"],
        "best_acc": record["best_acc"],
        "final_acc": record["final_acc"],
        "steps": record["steps"],
        "diverged_at": record["diverged_at"],
        "steps_to_target": record["steps_to_target"],
        "time_to_target": record["time_to_target"],
        "train_s": record["train_s"],
        "wall_s": record["wall_s"],
    })
    wandb.finish(exit_code=1 if failed else 0)
