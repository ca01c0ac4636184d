"""The environment fingerprint stored in every record."""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

import torch

from bnbench.resources import source_tree
from bnbench.results.record import Env

REPO = source_tree()  # None when installed from a wheel
PACKAGES = ("bnbench", "torch", "pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics", "wandb", "kornia", "numpy")


@lru_cache(maxsize=4)
def git_state(repo: Path | None = REPO) -> dict:
    """{'sha': HEAD or None, 'dirty': uncommitted changes to tracked files?} of the checkout
    bnbench runs from; both None when it runs installed from a wheel, from a source tree that
    is no git clone, or without git. Only a repository whose top level is `repo` counts: a
    source tree unpacked inside some other clone is not that clone's code.

    Changes under reports/ do not count: bnbench writes them itself (a study run in a clone
    rewrites its report), and they are no change to the code that ran."""
    unknown = {"sha": None, "dirty": None}
    if repo is None:
        return unknown

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "--show-toplevel", "HEAD")
        top, _, sha = head.stdout.strip().partition("\n")
        if head.returncode != 0 or Path(top).resolve() != Path(repo).resolve():
            return unknown
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports")
        return {"sha": sha, "dirty": status.stdout.strip() != ""}
    except (OSError, subprocess.SubprocessError):
        return unknown


@lru_cache(maxsize=1)
def code_version() -> str | None:
    """What identifies the code a run used (part of its run id): the git commit of the checkout;
    installed from a wheel, the version plus a hash of the installed files' own hashes (the
    wheel's RECORD), so two builds of one version number still differ. None if neither is known."""
    sha = git_state()["sha"]
    if sha is not None or REPO is not None:
        return sha
    try:
        dist = distribution("bnbench")
    except PackageNotFoundError:
        return None
    files = dist.read_text("RECORD") or ""
    return f"{dist.version}+{hashlib.sha256(files.encode()).hexdigest()[:12]}"


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


def fingerprint(device: torch.device) -> Env:
    return Env(
        git=git_state(),
        code=code_version(),
        python=platform.python_version(),
        packages=package_versions(),
        device=device.type,
        device_name=device_name(device),
        torch_threads=torch.get_num_threads(),
        host=socket.gethostname(),
        platform=platform.platform(),
    )
