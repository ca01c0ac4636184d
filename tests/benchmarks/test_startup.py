"""Start-up (roadmap target: `bnbench --help`, `bnbench train --help` and `--cfg job` under 1 s):
each command as a user types it, in a fresh process, against a bare interpreter's start, side by
side. Nothing asserts a time; the figures are printed and kept in .benchmarks/latest.json."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from timing import report, side_by_side

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
