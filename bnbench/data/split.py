"""The validation split: a fixed, seeded part of the training set held out for selection.

Learning rates, targets and best steps are chosen on it; the test set (MNIST's 10,000 t10k
images, ImageNet's val/ folder) is evaluated beside it and never selected on (README,
"Results"). The split is a permutation seeded with `data.val_seed` alone, not with the run's
`seed`, so every run of a study (every seed, every variant) holds out the same examples and
trains on the same rest. Both parts keep the stored order of the training file: shard-order
reading (shuffle=shard) still reads the training examples as they are stored.
"""

from __future__ import annotations

import torch

from bnbench.errors import ConfigError


def check_val_size(val_size: int, val_seed: int) -> None:
    """The arguments alone (the training set's size is checked by check_split)."""
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 1:
        raise ConfigError(f"data.val_size must be >= 1 (training examples held out for validation: learning rates, "
                          f"targets and best steps are chosen on them, never on the test set), got {val_size}")
    if val_seed < 0:
        raise ConfigError(f"data.val_seed must be >= 0, got {val_seed}")


def check_split(n: int, val_size: int, batch_size: int, source) -> None:
    """What the held-out part leaves for training is at least one (global) batch."""
    if n - val_size < batch_size:
        raise ConfigError(f"data.val_size={val_size} leaves {max(n - val_size, 0)} of the {n} training examples of "
                          f"{source} for training, fewer than one batch (data.batch_size={batch_size})")


def split_indices(n: int, val_size: int, val_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, validation) positions in a training file of n examples, each in stored order:
    the validation part is the first `val_size` of a permutation seeded with `val_seed`."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(val_seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values
