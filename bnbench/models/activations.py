from torch import nn

from bnbench.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None
