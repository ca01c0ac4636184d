"""hydra/launcher=slurm: Hydra's submitit SLURM launcher, with one SLURM task per device.

Lightning's SLURMEnvironment (active when SLURM_NTASKS is set) creates no processes itself: it
expects SLURM to start one task per device, `tasks_per_node == trainer.devices`. A study may mix
1-device and 2-device jobs, so one `tasks_per_node` for the whole sweep (Hydra's submitit launcher)
cannot fit. This launcher composes each job's config, reads its trainer.devices,
trainer.num_nodes and trainer.accelerator, and submits the jobs with their own resources:

    tasks_per_node = trainer.devices       (an integer; `auto`, lists and -1 are refused)
    nodes          = trainer.num_nodes     (1 when unset)
    gpus_per_node  = trainer.devices when trainer.accelerator is gpu/cuda, else none
                     (an integer `gpus_per_node` in the launcher config wins)

Jobs that need the same resources go out together as one SLURM job array, each with its own
job number (hence output folder); every group is submitted before any is waited for, and the
JobReturns come back in the sweep's order. A job that ends without a result (cancelled, killed
at its time limit or for memory, a node lost) comes back as a failed JobReturn, so the study
goes on to its report and exits 1, as for a job that raised; the parent launcher would raise
instead and drop the other jobs' returns. Everything else is the parent's: its parameters,
`__call__` in the job (one per SLURM task), and `checkpoint()`, through which submitit requeues a
job whose tasks get SIGUSR2 (conf/hydra/launcher/slurm.yaml).

submitit polls job states with `sacct` only. Where the cluster keeps no accounting (no
slurmdbd, e.g. the one-node test cluster of tests/cluster/slurm.sh) sacct fails on every call;
submitit then still sees a job end through its result file, but waits forever for a job that
died without one. The watcher installed here asks squeue instead in that case.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

GPU_ACCELERATORS = ("gpu", "cuda")

Resources = Tuple[int, int, Optional[int]]  # tasks_per_node, nodes, gpus_per_node


class BnbenchSlurmLauncher(SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        groups: Dict[Resources, List[int]] = {}
        for i, overrides in enumerate(job_overrides):  # every job checked before anything is submitted
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            groups.setdefault(self._resources(cfg, overrides), []).append(i)

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        _install_squeue_fallback()
        submitted = []
        for (tasks, nodes, gpus), positions in groups.items():
            log.info("SLURM: %d job(s) of %d node(s) x %d task(s), %s GPU(s) per node", len(positions), nodes, tasks,
                     gpus or "no")
            job_params = []
            for i in positions:
                idx = initial_job_idx + i
                log.info(f"\t#{idx} : {' '.join(filter_overrides(job_overrides[i]))}")
                job_params.append((list(job_overrides[i]), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                                   Singleton.get_state()))
            jobs = self._executor(tasks, nodes, gpus).map_array(self, *zip(*job_params))
            submitted += zip(positions, jobs)

        returns: List[Optional[JobReturn]] = [None] * len(job_overrides)
        for i, job in sorted(submitted, key=lambda pair: pair[0]):
            try:
                returns[i] = job.results()[0]  # rank 0's
            except Exception as e:  # the job left no result: a failed job, not a failed study
                log.error("SLURM job %s (#%d) ended without a result: %s", job.job_id, initial_job_idx + i,
                          " ".join(str(e).split())[:500])
                returns[i] = JobReturn(overrides=list(job_overrides[i]), status=JobStatus.FAILED, _return_value=e)
        return returns  # type: ignore[return-value]

    def _executor(self, tasks: int, nodes: int, gpus: Optional[int]) -> Any:
        """A submitit executor with the launcher's parameters and these resources (as the parent
        builds its one executor)."""
        import submitit

        params = {**self.params, "tasks_per_node": tasks, "nodes": nodes, "gpus_per_node": gpus}
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        return executor

    def _resources(self, cfg: Any, overrides: Sequence[str]) -> Resources:
        from bnbench.errors import ConfigError

        trainer = cfg.trainer
        devices, nodes = _count(trainer.get("devices", 1)), _count(trainer.get("num_nodes", 1))
        if devices is None or nodes is None:
            raise ConfigError(
                "hydra/launcher=slurm starts one SLURM task per device and needs trainer.devices and "
                f"trainer.num_nodes as positive integers, got devices={trainer.get('devices', 1)!r}, "
                f"num_nodes={trainer.get('num_nodes', 1)!r} for the job: {' '.join(overrides)}")
        gpus = self.params.get("gpus_per_node")
        if gpus is None and str(trainer.get("accelerator", "auto")).lower() in GPU_ACCELERATORS:
            gpus = devices
        return devices, nodes, gpus


def _count(value: Any) -> Optional[int]:
    """A positive device or node count (an int, or a string of one), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _install_squeue_fallback() -> None:
    """Give submitit's SlurmJob (a class attribute, in this process) the watcher below."""
    from submitit.slurm import slurm  # lazy, as in the parent: plugin discovery imports this module

    if not getattr(slurm.SlurmJob.watcher, "squeue_fallback", False):
        slurm.SlurmJob.watcher = _squeue_fallback_watcher(slurm.SlurmInfoWatcher)(delay_s=60)


def _squeue_fallback_watcher(base: type) -> type:
    class SqueueFallbackWatcher(base):  # type: ignore[valid-type,misc]
        """submitit's sacct poller, or squeue where sacct has no accounting to read.

        squeue knows every job slurmctld still holds (pending, running, requeued, and finished
        ones for MinJobAge seconds, 300 by default): polling at least every `delay_s` (60)
        seconds sees each job end."""

        squeue_fallback = True
        sacct_works: Optional[bool] = None

        def _make_command(self) -> Optional[List[str]]:
            command = super()._make_command()
            if command is None:
                return None
            ids = [command[i + 1] for i, arg in enumerate(command) if arg == "-j"]
            if self.sacct_works is None:
                probe = subprocess.run(["sacct", "-n", "-X", "-o", "JobID", "-j", ids[0]], capture_output=True)
                self.sacct_works = probe.returncode == 0
                if not self.sacct_works:
                    log.info("sacct does not answer (%s): polling job states with squeue",
                             " ".join((probe.stderr or probe.stdout).decode(errors="replace").split()))
            if self.sacct_works:
                return command
            return ["squeue", "--array", "--states=all", "--format=%i|%T|%N", "--jobs=" + ",".join(ids)]

        def read_info(self, string: Any) -> Dict[str, Dict[str, str]]:
            if not isinstance(string, str):
                string = string.decode()
            header, _, rows = string.partition("\n")
            if header.startswith("JOBID|"):  # squeue's header, in sacct's names
                string = "JobID|State|NodeList\n" + rows
            return super().read_info(string)

    return SqueueFallbackWatcher
