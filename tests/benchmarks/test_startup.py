"""Start-up (roadmap target: `bnbench --help`, `bnbench train --help` and `--cfg job` under 1 s):
each command as a user types it, in a fresh process, against a bare interpreter's start, side by
side. Nothing asserts a time; the figures are printed and kept in .benchmarks/latest.json."""

from __future__ import annotations

import os
import subprocess
import sys

from pathlib import Path

import pytest

from timing import report, side_by_side

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"  # conf/data/fashion_mnist.yaml's root
COMMANDS = {
    "--help": ["--help"],
    "train --help": ["train", "--help"],
    "train --cfg job": ["train", "--cfg", "job"],
    "study --help": ["study", "--help"],
}


def run(*args: str) -> None:
    env = {**os.environ, "WANDB_MODE": "offline"}
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, env=env)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_start_up(benchmark, command):
    medians = side_by_side({command: lambda: run("-m", "bnbench.cli", *COMMANDS[command]),
                            "python -c pass": lambda: run("-c", "pass")}, rounds=5)
    report(benchmark, f"bnbench {command}, a fresh process", medians, unit="ms", scale=1e3)
    benchmark.pedantic(run, args=("-m", "bnbench.cli", *COMMANDS[command]), rounds=1, iterations=1)


def to_first_step(tmp_path, logger: str) -> None:
    """`bnbench train` on the embedded default data, killed right after its first optimizer step
    (BNBENCH_FAULT=step-1, bnbench/faults.py: SIGKILL, no cleanup), so the time is the start-up:
    imports, config, data loading, the model, the logger, Lightning's set-up, the step-0 probe."""
    env = {**os.environ, "WANDB_MODE": "offline", "BNBENCH_FAULT": "step-1"}
    proc = subprocess.run([sys.executable, "-m", "bnbench.cli", "train", "experiment=mnist_bn", f"logger={logger}",
                           f"paths.results={tmp_path}/results", f"hydra.run.dir={tmp_path}/outputs"],
                          cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]  # killed at step 1, as asked


@pytest.mark.parametrize("logger", ["none", "wandb"])
def test_train_to_its_first_step(benchmark, tmp_path, logger):
    """Roadmap target: `bnbench train` to its first training step under 3 s (W&B offline)."""
    if not Path(DEFAULT_DATA).is_dir():
        pytest.skip(f"the default data is not installed ({DEFAULT_DATA})")
    # the floor under any Lightning run: importing Lightning (torch, torch._dynamo through
    # lightning_fabric.wrappers, torchmetrics and the scipy.signal it imports)
    medians = side_by_side({f"train logger={logger}, to step 1": lambda: to_first_step(tmp_path, logger),
                            "import pytorch_lightning": lambda: run("-c", "import pytorch_lightning"),
                            "python -c pass": lambda: run("-c", "pass")}, rounds=3)
    report(benchmark, f"bnbench train (paper MLP + BN, logger={logger}) to its first step", medians,
           unit="ms", scale=1e3)
    benchmark.pedantic(to_first_step, args=(tmp_path, logger), rounds=1, iterations=1)
