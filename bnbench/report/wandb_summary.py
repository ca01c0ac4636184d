"""The report in W&B: one small run per report built, in the study's group.

Beside a launch's training runs (bnbench/loggers.py), `bnbench study` (when its jobs are done)
and `bnbench report` log one W&B run with job_type "report" in the same project and group (the
study), named `report_<launch>`, holding two `wandb.Table`s made from the report's summary.json,
so that they hold its figures exactly:

  summary_table  one row per grid cell and variant: runs, seeds, statuses, steps to target, the
                 speed-up and its interval, best / final / end validation accuracy and test
                 accuracy (means over seeds, sds), and the verdicts of the claims about it
  claims_table   one row per grid cell and claim: rule, variant, reference, effect, interval,
                 verdict (when the study has claims)

It follows the launch's logger config as its records hold it (the latest run's): `logger=none`
(or `logger.mode=disabled`) logs nothing; project, entity, tags and timeouts as the jobs had
them; the mode too, unless WANDB_MODE is set now (as conf/logger/wandb.yaml reads it). Its files
go where the jobs' went: <the launch's Hydra sweep dir>/wandb/ (outputs/<study>/<launch>/wandb/),
so `wandb sync` uploads it like theirs. Every build from a launch logs a new run (the latest is the
report); a report folder rebuilt from its records.jsonl.gz logs none (bnbench/cli.py).

W&B never fails or holds up the report: online, the run starts within `logger.init_timeout` or is
logged offline instead (`logger.on_unreachable=fail`: not logged), its end waits at most
`logger.finish_timeout`, and any W&B error is one WARNING line.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from bnbench.results.archive import read_archive

log = logging.getLogger("bnbench")

JOB_TYPE = "report"
SUMMARY_KEY, CLAIMS_KEY = "summary_table", "claims_table"  # the tables' keys in the run
SUMMARY_COLUMNS = [
    "cell", "variant", "runs", "seeds", "statuses", "steps_to_target", "steps_to_target_text", "speedup",
    "speedup_low", "speedup_high", "speedup_method", "speedup_text", "best_acc", "best_acc_sd", "final_acc",
    "final_acc_sd", "end_acc", "end_acc_sd", "test_acc_at_best", "final_test_acc", "verdicts",
]
CLAIMS_COLUMNS = [
    "cell", "claim", "rule", "variant", "reference", "verdict", "observed", "effect", "unit", "point", "low", "high",
    "n", "method", "against_paper",
]


def log_report_run(report_dir: Path) -> Path | None:
    """Log the report in `report_dir` (its summary.json, and its archive's records for the
    logger config) as a W&B run; return the run's folder, or None when nothing was logged."""
    try:
        meta, records = read_archive(report_dir)
        logger = _logger_config(records)
        if logger is None:
            return None
        data = json.loads((Path(report_dir) / "summary.json").read_text())
        return _log(data, meta, records, logger)
    except Exception as e:  # W&B (or an unreadable report) never fails the report
        log.warning("the report's W&B run was not logged: %s: %s", type(e).__name__,
                    (str(e).splitlines() or [""])[0])
        return None


def _summary_rows(data: dict) -> list[list]:
    """summary.json's figures, one row per grid cell and variant (SUMMARY_COLUMNS)."""
    rows = []
    for cell in data["cells"]:
        for v in cell["variants"]:
            sp, steps = v.get("speedup") or {}, v.get("steps_to_target") or {}
            verdicts = "; ".join(f"{c['claim']}: {c['verdict']}" for c in cell["claims"]
                                 if c["variant"] == v["variant"])
            rows.append([
                cell["title"], v["variant"], v["runs"], ", ".join(str(s["seed"]) for s in v["best_acc"]["per_seed"]),
                ", ".join(f"{n} {status}" for status, n in v["statuses"].items()),
                steps.get("median"), steps.get("text"), sp.get("point"), sp.get("low"), sp.get("high"),
                sp.get("method"), sp.get("text"),
                v["best_acc"]["mean"], v["best_acc"]["sd"], v["final_acc"]["mean"], v["final_acc"]["sd"],
                v["end_acc"]["mean"], v["end_acc"]["sd"], v["test_acc_at_best"]["mean"], v["final_test_acc"]["mean"],
                verdicts,
            ])
    return rows


def _claims_rows(data: dict) -> list[list]:
    """summary.json's claims, one row per grid cell and claim (CLAIMS_COLUMNS)."""
    rows = []
    for cell in data["cells"]:
        for c in cell["claims"]:
            iv = c["interval"] or {}
            rows.append([cell["title"], c["claim"], c["rule"], c["variant"], c["reference"], c["verdict"],
                         c["observed"], c["effect"], c["unit"], iv.get("point"), iv.get("low"), iv.get("high"),
                         iv.get("n"), iv.get("method"), c["against_paper"]])
    return rows


def _logger_config(records: list[dict]) -> dict | None:
    """The logger config of the launch's latest run, or None when it logged nothing to W&B."""
    runs = [r for r in records if "logger" in (r.get("config") or {})]
    if not runs:
        return None
    logger = dict(max(runs, key=lambda r: str(r.get("started") or ""))["config"]["logger"])
    logger["mode"] = os.environ.get("WANDB_MODE") or logger.get("mode") or "offline"
    return None if logger.get("kind") != "wandb" or logger["mode"] == "disabled" else logger


def _where(meta: dict, records: list[dict]) -> Path:
    """The launch's Hydra sweep dir, where its jobs' W&B files are."""
    if meta.get("sweep_dir"):
        return Path(meta["sweep_dir"])
    outputs = [r["output_dir"] for r in records if r.get("output_dir")]
    return Path(outputs[-1]).parent if outputs else Path("outputs") / meta["study"] / meta["launch"]


def _log(data: dict, meta: dict, records: list[dict], logger: dict) -> Path | None:
    import wandb

    where = _where(meta, records)
    where.mkdir(parents=True, exist_ok=True)
    study = records[0].get("study") or data["study"]  # the group the jobs' runs are in
    bounds = {"init_timeout": float(logger.get("init_timeout", 30))}
    if logger.get("finish_timeout") is not None:
        bounds["finish_timeout"] = float(logger["finish_timeout"])
    init = dict(
        project=logger.get("project"), entity=logger.get("entity"), group=study, job_type=JOB_TYPE,
        name=f"report_{data['launch']}", tags=[study, JOB_TYPE, *logger.get("tags", [])], dir=str(where),
        config={"study": data["study"], "launch": data["launch"], "kind": data["kind"], "reference": data["reference"],
                "grid_keys": data["grid_keys"], "seeds": data["seeds"], "variants": data["variants"],
                "commit": data["code"]["commit"]},
        settings=wandb.Settings(**bounds))
    run = _start(init, logger)
    if run is None:
        return None
    try:
        tables = {SUMMARY_KEY: wandb.Table(columns=SUMMARY_COLUMNS, data=_summary_rows(data), allow_mixed_types=True)}
        claims = _claims_rows(data)
        if claims:
            tables[CLAIMS_KEY] = wandb.Table(columns=CLAIMS_COLUMNS, data=claims, allow_mixed_types=True)
        run.log(tables)
        folder = Path(run.dir).parent  # .../wandb/offline-run-<time>-<id>/files
    except Exception:
        run.finish(exit_code=1)
        raise
    run.finish()
    return folder


def _start(init: dict, logger: dict):
    """wandb.init in the logger's mode; online bounded as bnbench/loggers.py does it."""
    import wandb

    if logger["mode"] != "online":
        return wandb.init(mode=logger["mode"], **init)
    # as bnbench/loggers.py's _online_setup (not imported: it would import Lightning): no account look-up
    server = wandb.setup(settings=wandb.Settings(x_disable_viewer=True)).settings.base_url
    try:
        return wandb.init(mode="online", **init)
    except (wandb.errors.Error, TimeoutError) as e:
        problem = (f"W&B could not start the report's online run (server {server}, logger.init_timeout="
                   f"{float(logger.get('init_timeout', 30)):g}s): "
                   f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
    if logger.get("on_unreachable") == "fail":
        log.warning("%s; not logged (logger.on_unreachable=fail)", problem)
        return None
    run = wandb.init(mode="offline", **init)
    folder = Path(run.dir).parent
    log.warning("%s; logging it offline instead (logger.on_unreachable=offline) to %s; upload it later with "
                "`wandb sync %s`", problem, folder, folder)
    return run
