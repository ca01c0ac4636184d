"""`norm_layer` factories: the one place a norm config turns into modules (timm's create_norm).

Models call ``norm_layer(num_features, spatial)`` wherever the paper puts BN: after the
linear map or convolution, before the nonlinearity (Sec. 3). ``norm=none`` gives no factory
at all, and the model keeps the layer biases that BN's beta would otherwise replace.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from torch import nn

from bnbench.errors import ConfigError
from bnbench.nn.batchnorm import KERNELS, STATS, BatchNorm

NormLayer = Callable[[int, bool], nn.Module]
KINDS = ("none", "batch")
IMPLS = ("torch", "bnbench")
INFERENCE = ("ema", "population")


def _name(value):
    """A config Choice (bnbench.schema) as its plain str; anything else unchanged."""
    return value.value if isinstance(value, Enum) else value


def create_norm(kind: str, impl: str = "torch", eps: float = 1e-5, momentum: float = 0.1,
                stats: str = "device", ghost_size: int | None = None, inference: str = "ema",
                kernel: str = "fast", **_) -> NormLayer | None:
    """A factory for the layers of `norm.kind` (none | batch), or None for no normalization.

    `stats` (device | global | ghost, with `ghost_size` for ghost) picks the values BN
    normalizes over in training; see bnbench/nn/batchnorm.py. The names (kind, impl,
    inference, stats) must be known ones whatever the kind; how they combine is checked only
    for kind=batch (kind=none has no statistics). `inference` and `population_batches` are
    used by the training entry point, not here.
    """
    kind, impl, stats, inference, kernel = _name(kind), _name(impl), _name(stats), _name(inference), _name(kernel)
    for key, value, known in (("kind", kind, KINDS), ("impl", impl, IMPLS), ("inference", inference, INFERENCE),
                              ("stats", stats, STATS), ("kernel", kernel, KERNELS)):
        if value not in known:
            raise ConfigError(f"norm.{key} must be one of {', '.join(known)}, got {value!r}")
    if kind == "none":
        return None
    if not isinstance(momentum, (int, float)) or not 0.0 < momentum <= 1.0:
        raise ConfigError(f"norm.momentum must be in (0, 1] (PyTorch convention: weight of the new batch), got {momentum}")

    if not isinstance(eps, (int, float)) or not eps > 0:
        raise ConfigError(f"norm.eps must be > 0, got {eps!r}")
    if stats == "ghost" and ghost_size is None:
        raise ConfigError("norm.stats=ghost needs norm.ghost_size (examples per ghost batch, >= 2), got null")
    if ghost_size is not None and (isinstance(ghost_size, bool) or not isinstance(ghost_size, int) or ghost_size < 2):
        raise ConfigError(f"norm.ghost_size must be an integer >= 2 (a ghost batch of one example has no variance), "
                          f"got {ghost_size!r}")
    if stats != "ghost" and ghost_size is not None:
        raise ConfigError(f"norm.ghost_size={ghost_size} is only used with norm.stats=ghost, got norm.stats={stats}")
    if stats != "device" and impl != "bnbench":
        raise ConfigError(f"norm.stats={stats} is implemented by bnbench's own BN only: set norm.impl=bnbench "
                          f"(got norm.impl={impl})")
    if kernel != "fast" and impl != "bnbench":
        raise ConfigError(f"norm.kernel={kernel} picks a kernel of bnbench's own BN: set norm.impl=bnbench "
                          f"(got norm.impl={impl})")

    def norm_layer(num_features: int, spatial: bool = False) -> nn.Module:
        if impl == "bnbench":
            return BatchNorm(num_features, eps=eps, momentum=momentum, stats=stats, ghost_size=ghost_size,
                             kernel=kernel)
        cls = nn.BatchNorm2d if spatial else nn.BatchNorm1d
        return cls(num_features, eps=eps, momentum=momentum)

    return norm_layer


def is_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, (BatchNorm, nn.modules.batchnorm._BatchNorm))
