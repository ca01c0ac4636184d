"""The fully connected network of the MNIST experiment (Sec. 4.1).

784-100-100-100-10: three hidden layers of 100 sigmoid units, a 10-way output trained with
cross-entropy. Weights start as small Gaussian values (the paper gives no standard deviation;
`init_std`, default 0.1, keeps the first layer's pre-activations at unit scale for [0, 1]
inputs) and biases at zero. With BN, every hidden layer computes sigmoid(BN(W u)) and the
linear bias is dropped, since BN's beta takes its role (Sec. 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from torch import nn

from bnbench.errors import ConfigError
from bnbench.models.activations import make_activation
from bnbench.nn.norm import NormLayer


class MLP(nn.Module):
    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        norm_layer: NormLayer | None = None,
        activation: str = "sigmoid",
        dropout: float = 0.0,
        lrn: bool = False,
        hidden: Sequence[int] = (100, 100, 100),
        init_std: float = 0.1,
    ):
        super().__init__()
        if lrn:
            raise ValueError("the MLP has no local response normalization to keep")
        if not hidden or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
            raise ConfigError(f"model.hidden must list one or more layer widths >= 1, got {list(hidden)}")
        if not init_std > 0:
            raise ConfigError(f"model.init_std must be > 0 (the standard deviation of the initial weights), "
                              f"got {init_std}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = prod(in_shape)
        for h in hidden:
            layers.append(nn.Linear(width, h, bias=norm_layer is None))
            # The tap is where the probe reads the input to the nonlinearity (Fig. 1b/c).
            layers.append(norm_layer(h, False) if norm_layer else nn.Identity())
            layers.append(make_activation(activation))
            width = h
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
        self.probe_point = layers[-3 - (dropout > 0)]
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=init_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.net(x)
