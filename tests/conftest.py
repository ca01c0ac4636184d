"""Shared fixtures: tiny generated IDX data, Hydra composition, and the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bnbench.cli import CONF_DIR
from bnbench.data.idx import write_idx

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION_ROOT / "train-images-idx3-ubyte.gz").exists(),
    reason="real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist; `make setup` does it)",
)


# data.val_size of data=fashion_mnist|mnist: the generated training file holds this many more
# examples than `n_train`, so the default config leaves exactly `n_train` to train on
VAL_SIZE = 4000


def make_idx_dataset(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0, n_val: int = VAL_SIZE) -> Path:
    """A learnable MNIST-format dataset: each class is a bright square at its own position. The
    training file holds n_train + n_val examples: n_train are left for training once the
    default data.val_size (n_val) are held out for validation."""
    g = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train + n_val), ("t10k", n_test)):
        labels = torch.arange(n) % 10
        images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
        for k in range(10):
            r, c = 2 + (k // 5) * 12, 2 + (k % 5) * 5
            images[labels == k, r : r + 10, c : c + 4] = 230
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels.to(torch.uint8))
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("tiny_idx"))


def compose(overrides: list[str]):
    """The training config as `bnbench train <overrides>` would compose it (no Hydra run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from bnbench.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="test"):
        return hydra_compose("train", overrides=overrides)


def run_cli(*args: str, cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `bnbench` command, in a subprocess, W&B offline, in `cwd`."""
    base = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # unless `env` sets it
    env = {**base, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bnbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def records_under(path: Path) -> list[Path]:
    return sorted(Path(path).rglob("record.json"))
