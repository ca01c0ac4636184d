"""The environment fingerprint stored in every record."""

from __future__ import annotations

import platform
import socket
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("bnbench", "torch", "pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics", "wandb", "kornia", "numpy")


@lru_cache(maxsize=4)
def git_state(repo: Path = REPO) -> dict:
    """{'sha': HEAD or None, 'dirty': uncommitted changes to tracked files?}

    Changes under reports/ do not count: bnbench writes them itself (a study run in a clone
    rewrites its report), and they are no change to the code that ran."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"sha": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports")
        return {"sha": head.stdout.strip(), "dirty": status.stdout.strip() != ""}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(device: torch.device) -> dict:
    return {
        "git": git_state(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "device": device.type,
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
