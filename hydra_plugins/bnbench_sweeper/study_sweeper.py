"""A Hydra sweeper that runs a bnbench study: an explicit list of jobs, not a cartesian product.

Hydra's basic sweeper crosses every swept key with every other; a study's variants are
heterogeneous override sets (add-one-in, leave-one-out), so this sweeper takes the job list
from the study file (bnbench.study.spec) and hands it to whichever launcher is configured
(joblib on one machine, submitit on a cluster).

Before launching it composes and builds every job (no training), so a bad key, value or data
file fails the whole study at once with one line, before anything runs. Failed or diverged
jobs do not stop the others; each leaves its record. The launch itself is recorded in
<paths.results>/<study>/<launch>/study.json.

Relaunching a launch (`bnbench study <name> study.launch=<launch>`) skips every job whose
record is already there (a run's id hashes its resolved config, seed and code version), so an
interrupted study is finished by running the same command again, and seeds added to the study
file run alone. A launch holding runs of another commit is refused.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.utils import to_absolute_path
from omegaconf import OmegaConf, open_dict

log = logging.getLogger("bnbench")


class StudySweeper(Sweeper):
    def __init__(self, study: str, seeds: Optional[List[int]] = None):
        self.study_name = study
        self.seeds = list(seeds) if seeds is not None else None
        self.config = self.launcher = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> Any:
        from bnbench.results.store import STUDY, USER_OVERRIDES_ENV, read_json, write_json_atomic
        from bnbench.study.spec import launch_of, load_study
        from bnbench.preflight import check_writable

        spec = load_study(self.study_name)
        launch = launch_of(arguments)
        jobs = spec.jobs(launch, self.seeds, arguments)
        # The sweep directory (outputs/${study.name}/${study.launch}) is read from this config by
        # every launcher: give it the study's name and launch, as each job's config has.
        with open_dict(self.config):
            self.config.study.name, self.config.study.launch = spec.name, launch
        results = Path(to_absolute_path(self.config.paths.results)) / spec.name / launch
        previous = None
        if (results / STUDY).exists():
            try:
                previous = read_json(results / STUDY)
                if not isinstance(previous, dict) or "started" not in previous:
                    raise ValueError("not a launch record")
            except (OSError, ValueError) as e:  # not bnbench's, or damaged by hand: start its record afresh
                log.warning("ignoring %s: not readable as a launch's record (%s)", results / STUDY, e)

        tic = time.perf_counter()
        done = self._check_jobs(jobs, results)
        todo = [job for job in jobs if job not in done]
        log.info("study %s: %d jobs checked in %.1fs; %d to run, %d done before in this launch",
                 spec.name, len(jobs), time.perf_counter() - tic, len(todo), len(done))

        sweep_dir = Path(self.config.hydra.sweep.dir)
        check_writable(sweep_dir, "hydra.sweep.dir")  # paths.results: checked by build, per job
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        meta = {
            "study": spec.name,
            "spec": spec.raw,
            "spec_path": str(spec.path),
            "launch": launch,
            "command": sys.argv,
            "arguments": list(arguments),
            # the overrides the user gave `bnbench study` (null when not started by it): what a report shows
            "user_overrides": json.loads(os.environ.pop(USER_OVERRIDES_ENV, "null")),
            "seeds": self.seeds if self.seeds is not None else spec.seeds,
            "jobs": jobs,
            "launcher": OmegaConf.to_container(self.config.hydra.launcher, resolve=True),
            "sweep_dir": str(sweep_dir),
            "started": previous["started"] if previous else now,
            "resumed": [*previous.get("resumed", []), now] if previous else [],
            "skipped_jobs": done,
            "finished": None,
        }
        write_json_atomic(results / STUDY, meta)

        t0 = time.perf_counter()
        # job numbers (output sub-folders) continue after those of earlier attempts at this launch
        taken = [int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        returns = self.launcher.launch(todo, initial_job_idx=max(taken, default=-1) + 1) if todo else []
        failed = [r for r in returns if r.status != JobStatus.COMPLETED]
        for r in failed:
            log.error("job failed: %s: %s", " ".join(r.overrides), r._return_value)
        meta.update(
            finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            wall_s=time.perf_counter() - t0,
            failed_jobs=[list(r.overrides) for r in failed],
        )
        write_json_atomic(results / STUDY, meta)
        log.info("study %s: %d jobs run in %.0fs (%d failed, %d done before); results in %s",
                 spec.name, len(todo), meta["wall_s"], len(failed), len(done), results)
        return [returns]

    def _check_jobs(self, jobs: list[list[str]], results: Path) -> list[list[str]]:
        """Compose and build every job (fail fast, before anything runs); return those whose
        record is already in this launch (same resolved config, seed and code: same run id).
        Records of other code in the launch are refused: they would be mixed in its report."""
        from bnbench.errors import ConfigError
        from bnbench.preflight import check_values, preflight
        from bnbench.results.store import RECORD, UnreadableRecord, read_record, read_records

        loader, cfgs, done = self.hydra_context.config_loader, [], []
        for overrides in jobs:
            cfgs.append(loader.load_sweep_config(self.config, list(overrides)))
            check_values(cfgs[-1])  # every job's values first: a bad one is reported before torch's import

        from bnbench.results.env import git_state  # torch, Lightning: from here on
        from bnbench.train import record_dir

        here = git_state()["sha"]
        other = {((r["env"] or {}).get("git") or {}).get("sha") for r in read_records(results, with_curves=False)}
        other -= {here}
        if other:
            raise ConfigError(f"{results} holds runs of commit {', '.join(sorted(str(o)[:10] for o in other))}, "
                              f"this is {str(here)[:10]}: relaunch under a new study.launch (or leave it out)")
        for overrides, cfg in zip(jobs, cfgs):
            preflight(cfg)  # schema, build, data: bnbench.preflight
            with open_dict(cfg):
                del cfg["hydra"]  # as in the job itself
            if (record_dir(cfg) / RECORD).exists():
                try:
                    read_record(record_dir(cfg) / RECORD)
                    done.append(overrides)
                except UnreadableRecord:  # half-written or foreign (read_records warned): run it again
                    pass
        return done
