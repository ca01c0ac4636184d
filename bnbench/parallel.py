"""One run on N processes: how `trainer.devices` x `trainer.num_nodes` become ranks.

Lightning's own launchers do not fit a Hydra harness (../shared/PITFALLS.md, "Hydra + DDP"):
`strategy=ddp` re-executes sys.argv in every child, so under `-m` each child starts the whole
sweep again, and `ddp_spawn` trains in children whose trackers never come back (the record
said 0 steps). So bnbench starts the ranks itself, as torchrun would:

* ``spawn``: no scheduler gave us ranks. The job's process writes the job's resolved config
  to a spec file, starts N workers (``python -m bnbench.parallel SPEC RANK``) and waits.
  Each worker trains with Lightning's DDP strategy and a cluster environment that knows its
  rank, so Lightning launches nothing itself. Rank 0 alone writes the record, the curves and
  the W&B run; the job returns rank 0's record. One job, one record, whatever the launcher.
* ``slurm``: SLURM started one task per device (``hydra/launcher=slurm``); each task runs the
  job in process with Lightning's SLURMEnvironment. Its auto-requeue is off: submitit owns
  requeueing (README, "Running on a SLURM cluster"), and exactly one component may.
* ``torchelastic``: torchrun started the ranks; in process.
* ``single``: one process, no process group (or one of size 1 for ``trainer.strategy=ddp``).

Batch semantics: ``recipe.batch_size`` is the *global* batch, the examples one optimizer step
sees; each of the N ranks trains on its own 1/N slice of every global batch (README,
"Multi-device and clusters").
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bnbench.errors import BnbenchError, ConfigError

log = logging.getLogger("bnbench")

# Strategies whose launchers lose or re-run the job: bnbench launches the ranks itself.
FOREIGN_LAUNCHERS = ("ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_spawn_find_unused_parameters_false")
RESULT = "record.json"  # rank 0's record, handed back beside the spec file
ERROR = "error.txt"  # a rank's BnbenchError (bad input found late), handed back the same way


@dataclass(frozen=True)
class ProcessPlan:
    """Who this process is in the run: `world_size` ranks over `num_nodes` nodes."""

    mode: str
    devices: int  # processes per node
    num_nodes: int = 1
    rank: int = 0  # global rank of this process
    ddp: bool = False  # a DDP strategy (and process group), even for one process
    port: int | None = None

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def is_zero(self) -> bool:
        return self.rank == 0


@dataclass
class RunContext:
    """What a run knows from Hydra, carried as plain values into worker processes (where
    HydraConfig is not initialised)."""

    run_id: str
    output_dir: str
    choices: dict = field(default_factory=dict)
    overrides: list = field(default_factory=list)
    job_num: int | None = None  # the job's number in a Hydra multirun (None: a single run)


def gpu_placement(trainer_cfg: DictConfig, job_num: int | None, gpus: int | None = None) -> dict:
    """Trainer arguments that place a one-device job of a sweep: jobs are dealt round-robin over
    the machine's GPUs (job k on GPU k mod n), so jobs running side by side (hydra/launcher=local:
    one per core) fill every GPU, where Lightning would put each on GPU 0. Only for
    `trainer.devices: 1` with accelerator gpu, cuda or auto and several GPUs visible (`gpus`:
    torch's count); an explicit device list, DDP jobs and SLURM tasks (which see their own
    allocation) are left alone."""
    if job_num is None or str(trainer_cfg.get("devices", 1)) != "1":
        return {}
    if str(trainer_cfg.get("accelerator", "auto")) not in ("gpu", "cuda", "auto"):
        return {}
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"devices": [job_num % gpus]} if gpus > 1 else {}


def device_count(trainer_cfg: DictConfig) -> int:
    """`trainer.devices` as a number of processes per node."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if devices in ("auto", -1):
        import torch

        gpu = str(trainer_cfg.get("accelerator", "auto")) in ("gpu", "cuda", "auto") and torch.cuda.is_available()
        return torch.cuda.device_count() if gpu else 1
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    if not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"trainer.devices must be a positive number of devices, 'auto' or a list, got {devices!r}")
    return devices


def plan_processes(cfg: DictConfig) -> ProcessPlan:
    """This process's place in the run, from the config and the environment it was started in."""
    t = cfg.trainer
    devices = device_count(t)
    num_nodes = t.get("num_nodes", 1)
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(f"trainer.num_nodes must be a positive integer, got {num_nodes!r}")
    strategy = t.get("strategy", "auto")
    if not isinstance(strategy, str):
        raise ConfigError(f"trainer.strategy must be a name ('auto' or 'ddp'), got {strategy!r}")
    if strategy in FOREIGN_LAUNCHERS:
        raise ConfigError(f"trainer.strategy={strategy}: bnbench starts DDP processes itself (a spawned run's "
                          "results would be lost); use trainer=ddp (strategy ddp) with trainer.devices=N")
    world = devices * num_nodes
    if world > 1 and strategy not in ("auto", "ddp"):
        raise ConfigError(f"trainer.strategy={strategy} with {world} processes: bnbench runs multi-process "
                          "training with DDP only (trainer=ddp)")
    ddp = world > 1 or strategy == "ddp"
    ntasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if ntasks > 1:  # srun started one task per rank
        if ntasks != world:
            raise ConfigError(f"SLURM started {ntasks} tasks but trainer.devices x trainer.num_nodes = "
                              f"{devices} x {num_nodes} = {world}: one SLURM task per device (hydra/launcher=slurm "
                              "sets tasks_per_node from trainer.devices)")
        return ProcessPlan("slurm", devices, num_nodes, int(os.environ["SLURM_PROCID"]), ddp=True)
    if "TORCHELASTIC_RUN_ID" in os.environ:
        if int(os.environ["WORLD_SIZE"]) != world:
            raise ConfigError(f"torchrun started {os.environ['WORLD_SIZE']} processes but trainer.devices x "
                              f"trainer.num_nodes = {world}")
        return ProcessPlan("torchelastic", devices, num_nodes, int(os.environ["RANK"]), ddp=True)
    if num_nodes > 1:
        raise ConfigError(f"trainer.num_nodes={num_nodes}: several nodes need a scheduler that starts one process "
                          "per device (hydra/launcher=slurm, or torchrun)")
    if world > 1:
        return ProcessPlan("spawn", devices, 1, 0, ddp=True, port=free_port())
    return ProcessPlan("single", 1, 1, 0, ddp=ddp, port=free_port() if ddp else None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_environment(plan: ProcessPlan):
    """Lightning's view of the ranks. Spawned workers (and a one-process DDP run) get a
    LightningEnvironment that says the processes exist already, so Lightning starts none."""
    from lightning_fabric.plugins.environments import (LightningEnvironment, SLURMEnvironment,
                                                       TorchElasticEnvironment)

    if plan.mode == "slurm":
        return SLURMEnvironment(auto_requeue=False)  # submitit requeues (README)
    if plan.mode == "torchelastic":
        return TorchElasticEnvironment()

    class StartedRanks(LightningEnvironment):
        @property
        def creates_processes_externally(self) -> bool:
            return True

        @property
        def main_address(self) -> str:
            return "127.0.0.1"

        @property
        def main_port(self) -> int:
            return plan.port

        def local_rank(self) -> int:
            return plan.rank

        def node_rank(self) -> int:
            return 0

    return StartedRanks()


def trainer_arguments(plan: ProcessPlan) -> dict:
    """Trainer arguments that put this process in its run: a DDP strategy with bnbench's
    cluster environment, or nothing for a plain single-process run."""
    from lightning_fabric.plugins.environments import SLURMEnvironment
    from pytorch_lightning.strategies import DDPStrategy

    if not plan.ddp:
        # One process in a SLURM job: Lightning would pick SLURMEnvironment with its own
        # auto-requeue on SIGUSR1; submitit owns requeueing (exactly one component may).
        return {"plugins": [SLURMEnvironment(auto_requeue=False)]} if SLURMEnvironment.detect() else {}

    # No buffer sync in the forward pass: each rank keeps its own moving averages during training
    # and bnbench averages them over ranks before every evaluation (callbacks/sync_stats.py),
    # instead of DDP silently replacing them with rank 0's before every forward pass. torch 2.13
    # renamed the switch (broadcast_buffers is deprecated); the new one still syncs the buffers
    # once when DDP wraps the model, where every rank holds the same ones (fresh, or loaded
    # from the same checkpoint), so both mean the same here.
    strategy = DDPStrategy(cluster_environment=cluster_environment(plan), **no_forward_buffer_sync())
    return {"strategy": strategy, "devices": plan.devices, "num_nodes": plan.num_nodes}


def no_forward_buffer_sync() -> dict:
    """DistributedDataParallel's argument that keeps buffers rank-local in the forward pass:
    forward_sync_buffers=False where torch has it (2.13+), else broadcast_buffers=False."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def leave_process_group() -> None:
    """End a finished run's process group together: every rank waits until all are done (rank 0
    writes the record and closes W&B last), then the group is destroyed. A rank that simply
    exited could break a connection another rank still uses (gloo aborts the process on that),
    and a reused worker process (joblib) would meet a stale group in its next job."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# --- the spawn launcher: the job's process and its workers ------------------------------------


def launch_workers(cfg: DictConfig, ctx: RunContext, plan: ProcessPlan, record_path: Path) -> dict | None:
    """Run the job on `plan.world_size` worker processes and wait; return rank 0's record (handed
    back through the spec folder, so also when it had to be written elsewhere than `record_path`).

    A worker that fails stops the others (a rank left alone would wait in a collective until
    the process group's timeout)."""
    spec_dir = Path(tempfile.mkdtemp(prefix="bnbench-ranks-"))
    spec = spec_dir / "spec.json"
    config = OmegaConf.to_container(cfg, resolve=True)  # ${now:...} resolved once, here
    spec.write_text(json.dumps({"config": config, "context": asdict(ctx), "plan": asdict(plan)}))
    threads = cfg.run.threads or max(1, (os.cpu_count() or 1) // plan.world_size)
    procs, tails = [], []
    try:
        for rank in range(plan.world_size):
            env = {**os.environ, "LOCAL_RANK": str(rank), "NODE_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(plan.port), "BNBENCH_THREADS": str(threads), "PYTHONFAULTHANDLER": "1"}
            # Rank 0 writes to the terminal as it is (its progress bar); the others' lines pass
            # through a pipe so that the last of them can go into the error if the rank fails.
            pipe = subprocess.PIPE if rank else None
            procs.append(subprocess.Popen([sys.executable, "-m", "bnbench.parallel", str(spec), str(rank)], env=env,
                                          stderr=pipe))
            tails.append(StderrTail(procs[-1]) if rank else None)
        failed = wait_all(procs)
        if (spec_dir / ERROR).exists():  # a rank met bad input (bnbench's one-line errors): say it as one line
            raise BnbenchError((spec_dir / ERROR).read_text())
        if failed is not None:
            rank, code = failed
            said = tails[rank].last_lines() if tails[rank] else "its traceback is above"
            raise RuntimeError(f"rank {rank} of {plan.world_size} exited with {exit_status(code)}; record: "
                               f"{record_path if record_path.exists() else 'none'}; {said}")
        result = spec_dir / RESULT
        record = json.loads(result.read_text()) if result.exists() else None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in spec_dir.iterdir():
            f.unlink()
        spec_dir.rmdir()
    return record


def exit_status(code: int) -> str:
    """'status 1', or the signal's name for a process killed by one ('signal SIGABRT')."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"status {code}"


class StderrTail:
    """A worker's stderr passed through to ours line by line, keeping its last lines for the
    error message should the worker fail (a C++ abort's reason or a Python traceback's last
    line would otherwise be far up the terminal, or lost where only a tail is kept)."""

    def __init__(self, proc: subprocess.Popen, keep: int = 12):
        self.lines: deque[str] = deque(maxlen=keep)
        self.thread = threading.Thread(target=self._pump, args=(proc.stderr,), daemon=True)
        self.thread.start()

    def _pump(self, stream) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace")
                sys.stderr.write(line)
                sys.stderr.flush()
                if line.strip():
                    self.lines.append(line.rstrip())

    def last_lines(self, timeout_s: float = 5.0) -> str:
        self.thread.join(timeout_s)  # the pipe closes when the process has gone
        lines = list(self.lines)
        return "its last lines:\n" + "\n".join(f"  | {line}" for line in lines) if lines else "it printed nothing"


def wait_all(procs: list[subprocess.Popen], poll_s: float = 0.2, grace_s: float = 10.0) -> tuple[int, int] | None:
    """Wait for every worker; on the first failure give the others `grace_s` to finish (rank 0
    may be writing a failed record), then return (rank, status). None when all exit 0."""
    failed = None
    while True:
        codes = [p.poll() for p in procs]
        if failed is None:
            bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if bad:
                failed, deadline = bad[0], time.monotonic() + grace_s
        if all(c is not None for c in codes):
            return failed
        if failed is not None and time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
            return failed
        time.sleep(poll_s)


def worker_main(spec_path: str, rank: int) -> int:
    """One rank of a spawned run (`python -m bnbench.parallel SPEC RANK`)."""
    spec = json.loads(Path(spec_path).read_text())
    plan = ProcessPlan(**{**spec["plan"], "rank": rank})
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    import torch

    from bnbench.results.store import finite
    from bnbench.train import train_process

    torch.set_num_threads(int(os.environ.get("BNBENCH_THREADS", "1")))
    try:
        record = train_process(OmegaConf.create(spec["config"]), RunContext(**spec["context"]), plan)
    except BnbenchError as e:  # e.g. W&B could not start online (logger.on_unreachable=fail)
        (Path(spec_path).parent / ERROR).write_text(str(e))
        return 2
    if record is not None:  # rank 0: hand the record back to the job's process
        (Path(spec_path).parent / RESULT).write_text(json.dumps(finite(record), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1], int(sys.argv[2])))
