"""Inception networks of the paper (Sec. 4.2 and the appendix table, Fig. 5).

One module type serves both networks: four branches (1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3,
the "double 3x3" that replaces GoogLeNet's 5x5 | pooling -> 1x1 projection, or the pooled
input passed through), concatenated. In the stride-2 modules (3c, 4e) the 3x3 branches end
with stride 2, the pool has stride 2, and there is no 1x1 branch.

Every convolution is followed by the norm layer (when `norm=batch`, with statistics per
feature map over batch and positions, Sec. 3.2) and then the nonlinearity; under BN the
convolution has no bias (beta replaces it). LRN follows the stem as in GoogLeNet (after the
first pooling, and after the second convolution) unless the recipe removes it. Dropout sits
before the classifier, a linear layer on the globally pooled features.

`BNInception` is the full 224x224 network of Fig. 5. The table is inconsistent at 4c/4d:
its branch widths add up to 608 channels where it lists 576 (and 4e's pass-through would then
give 1056, not 1024). Like TF-slim's inception_v2, we keep the listed sizes by giving 4c and
4d a 96-filter pool projection instead of 128. Without an auxiliary head this has 11.2M
parameters with BN (the paper's 13.6M likely counts an auxiliary classifier).

`InceptionMini` applies the same recipe to 28x28 inputs, scaled so the paper's studies run
on a 2-core CPU (see its docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bnbench.models.activations import make_activation
from bnbench.nn.lrn import LocalResponseNorm
from bnbench.nn.norm import NormLayer


def conv_norm_act(cin: int, cout: int, k: int, stride: int, norm_layer: NormLayer | None, activation: str,
                  groups: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=norm_layer is None)
    layers = [conv]
    if norm_layer is not None:
        layers.append(norm_layer(cout, True))
    layers.append(make_activation(activation))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class ModuleSpec:
    """One row of the appendix table: filters per branch (0 = no such branch)."""

    name: str
    n1x1: int
    n3x3_reduce: int
    n3x3: int
    dbl_reduce: int
    dbl: int
    pool: str  # "avg" | "max"
    proj: int  # 0 = pass the pooled input through
    stride: int = 1

    def out_channels(self, cin: int) -> int:
        return self.n1x1 + self.n3x3 + self.dbl + (self.proj or cin)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, spec: ModuleSpec, norm_layer: NormLayer | None, activation: str):
        super().__init__()
        s, cna = spec, lambda a, b, k, st=1: conv_norm_act(a, b, k, st, norm_layer, activation)
        branches = []
        if s.n1x1:
            branches.append(cna(cin, s.n1x1, 1))
        branches.append(nn.Sequential(cna(cin, s.n3x3_reduce, 1), cna(s.n3x3_reduce, s.n3x3, 3, s.stride)))
        branches.append(nn.Sequential(cna(cin, s.dbl_reduce, 1), cna(s.dbl_reduce, s.dbl, 3),
                                      cna(s.dbl, s.dbl, 3, s.stride)))
        pool = (nn.AvgPool2d(3, s.stride, 1, count_include_pad=False) if s.pool == "avg"
                else nn.MaxPool2d(3, s.stride, 1))
        branches.append(nn.Sequential(pool, cna(cin, s.proj, 1)) if s.proj else pool)
        self.branches = nn.ModuleList(branches)
        self.out_channels = s.out_channels(cin)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


def local_response_norm() -> nn.Module:
    # GoogLeNet's LRN: 5 neighbouring channels, alpha 1e-4, beta 0.75 (torch's, computed faster).
    return LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


class Inception(nn.Module):
    """stem -> Inception modules -> global average pool -> dropout -> linear."""

    def __init__(self, stem: nn.Module, stem_channels: int, specs: Sequence[ModuleSpec], num_classes: int,
                 norm_layer: NormLayer | None, activation: str, dropout: float):
        super().__init__()
        self.stem = stem
        modules, c = [], stem_channels
        for spec in specs:
            m = InceptionModule(c, spec, norm_layer, activation)
            modules.append(m)
            c = m.out_channels
        self.blocks = nn.Sequential(*modules)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(c, num_classes)
        self.num_features = c
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu" if activation == "relu" else "linear")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.pool(self.blocks(self.stem(x))).flatten(1)
        return self.classifier(self.dropout(x))


# The appendix table (Fig. 5), 4c/4d pool projections as explained in the module docstring.
BN_INCEPTION_MODULES = (
    ModuleSpec("3a", 64, 64, 64, 64, 96, "avg", 32),
    ModuleSpec("3b", 64, 64, 96, 64, 96, "avg", 64),
    ModuleSpec("3c", 0, 128, 160, 64, 96, "max", 0, stride=2),
    ModuleSpec("4a", 224, 64, 96, 96, 128, "avg", 128),
    ModuleSpec("4b", 192, 96, 128, 96, 128, "avg", 128),
    ModuleSpec("4c", 160, 128, 160, 128, 160, "avg", 96),
    ModuleSpec("4d", 96, 128, 192, 160, 192, "avg", 96),
    ModuleSpec("4e", 0, 128, 192, 192, 256, "max", 0, stride=2),
    ModuleSpec("5a", 352, 192, 320, 160, 224, "avg", 128),
    ModuleSpec("5b", 352, 192, 320, 192, 224, "max", 128),
)


class BNInception(Inception):
    """The full network of Fig. 5 for 224x224 inputs."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, norm_layer: NormLayer | None = None,
                 activation: str = "relu", dropout: float = 0.0, lrn: bool = False):
        cin = in_shape[0]
        cna = lambda a, b, k, st=1, g=1: conv_norm_act(a, b, k, st, norm_layer, activation, groups=g)  # noqa: E731
        # The first convolution is separable with depth multiplier 8: a depthwise 7x7/2 giving
        # cin * 8 maps, then a pointwise 1x1 to 64 (normalized and activated once, after both).
        depthwise = nn.Conv2d(cin, cin * 8, 7, stride=2, padding=3, groups=cin, bias=False)
        stem = [depthwise, cna(cin * 8, 64, 1), nn.MaxPool2d(3, 2, 1)]
        stem += [local_response_norm()] if lrn else []
        stem += [cna(64, 64, 1), cna(64, 192, 3)]
        stem += [local_response_norm()] if lrn else []
        stem += [nn.MaxPool2d(3, 2, 1)]
        super().__init__(nn.Sequential(*stem), 192, BN_INCEPTION_MODULES, num_classes, norm_layer, activation, dropout)


MINI_MODULES = (
    ModuleSpec("3a", 16, 16, 16, 16, 24, "avg", 8),
    ModuleSpec("3b", 16, 16, 24, 16, 24, "avg", 16),
    ModuleSpec("3c", 0, 32, 40, 16, 24, "max", 0, stride=2),
    ModuleSpec("4a", 48, 24, 32, 24, 32, "avg", 32),
    ModuleSpec("4b", 48, 32, 48, 32, 48, "max", 32),
)


class InceptionMini(Inception):
    """The same module type and recipe for 28x28 inputs (see the module docstring).

    The stem mirrors BN-Inception's at 1/8 the resolution: a strided convolution
    (28 -> 14), max pooling (-> 7), LRN, 1x1 and 3x3 convolutions, LRN; then modules 3a, 3b
    at 7x7, 3c (stride 2, -> 4x4), 4a, 4b. Pooling and LRN dominate a CPU step on larger
    maps, which is why the stem shrinks the maps first.
    """

    def __init__(self, in_shape: Sequence[int], num_classes: int, norm_layer: NormLayer | None = None,
                 activation: str = "relu", dropout: float = 0.0, lrn: bool = False,
                 modules: Sequence[ModuleSpec] = MINI_MODULES):
        cin = in_shape[0]
        cna = lambda a, b, k, st=1: conv_norm_act(a, b, k, st, norm_layer, activation)  # noqa: E731
        stem = [cna(cin, 32, 3, 2), nn.MaxPool2d(3, 2, 1)]  # 28 -> 14 -> 7
        stem += [local_response_norm()] if lrn else []
        stem += [cna(32, 32, 1), cna(32, 64, 3)]
        stem += [local_response_norm()] if lrn else []
        super().__init__(nn.Sequential(*stem), 64, modules, num_classes, norm_layer, activation, dropout)
