"""The MNIST MLP (Sec. 4.1) and the Inception networks (Sec. 4.2, Fig. 5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from bnbench.errors import ConfigError
from bnbench.models.inception import BNInception, InceptionMini
from bnbench.models.mlp import MLP
from bnbench.nn.batchnorm import BatchNorm
from bnbench.nn.norm import create_norm, is_batch_norm

MNIST = (1, 28, 28)
NORMS = {"none": None, "torch": create_norm("batch", impl="torch"), "bnbench": create_norm("batch", impl="bnbench")}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a busy 2-core machine two threads spin-wait (BN-Inception's pass goes
    from ~0.3 s to ~10 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- MLP


@pytest.mark.parametrize("norm", NORMS, ids=str)
def test_mlp_layers(norm):
    model = MLP(MNIST, 10, norm_layer=NORMS[norm])
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 100), (100, 100), (100, 100), (100, 10)]
    if norm == "none":
        assert all(m.bias is not None for m in linears)
        assert not any(is_batch_norm(m) for m in model.modules())
    else:
        assert all(m.bias is None for m in linears[:-1])  # beta replaces the bias
        assert linears[-1].bias is not None
        norms = [m for m in model.modules() if is_batch_norm(m)]
        assert [m.num_features for m in norms] == [100, 100, 100]
        assert all(isinstance(m, BatchNorm if norm == "bnbench" else nn.BatchNorm1d) for m in norms)
    sigmoids = [m for m in model.modules() if isinstance(m, nn.Sigmoid)]
    assert len(sigmoids) == 3
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    # Order: linear -> (BN) -> sigmoid in every hidden layer.
    kinds = [type(m).__name__ for m in model.net]
    tap = "Identity" if norm == "none" else type(NORMS[norm](100, False)).__name__
    assert kinds == ["Flatten"] + ["Linear", tap, "Sigmoid"] * 3 + ["Linear"]


@pytest.mark.parametrize("init_std", [0.1, 0.02])
def test_mlp_init(init_std):
    torch.manual_seed(0)
    model = MLP(MNIST, 10, init_std=init_std)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert weights.std().item() == pytest.approx(init_std, rel=0.02)
    assert abs(weights.mean().item()) < init_std * 0.02
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    # Each layer, too (the first one dominates the pooled count).
    assert linears[-1].weight.std().item() == pytest.approx(init_std, rel=0.15)


def test_mlp_forward_shape():
    model = MLP(MNIST, 10, norm_layer=NORMS["torch"])
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 10)


@pytest.mark.parametrize("norm", NORMS, ids=str)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_mlp_probe_point_feeds_last_hidden_sigmoid(norm, dropout):
    torch.manual_seed(1)
    model = MLP(MNIST, 10, norm_layer=NORMS[norm], dropout=dropout).eval()
    assert any(isinstance(m, nn.Dropout) for m in model.modules()) == (dropout > 0)
    last_sigmoid = [m for m in model.modules() if isinstance(m, nn.Sigmoid)][-1]
    probed, fed = [], []
    h1 = model.probe_point.register_forward_hook(lambda m, i, out: probed.append(out))
    h2 = last_sigmoid.register_forward_pre_hook(lambda m, i: fed.append(i[0]))
    model(torch.rand(5, 1, 28, 28))
    h1.remove(), h2.remove()
    assert len(probed) == len(fed) == 1
    assert probed[0].shape == (5, 100)
    assert_close(probed[0], fed[0], rtol=0, atol=0)
    # ... and not one of the earlier sigmoids' inputs.
    assert all(model.probe_point is not model.net[i] for i in (2, 5))


def test_mlp_lrn_raises():
    with pytest.raises(ValueError, match="local response"):
        MLP(MNIST, 10, lrn=True)


def test_mlp_bad_activation():
    with pytest.raises(ConfigError, match=r"model\.activation"):
        MLP(MNIST, 10, activation="tanh")


# --------------------------------------------------------------------------- BN-Inception


BN_INCEPTION_CHANNELS = [256, 320, 576, 576, 576, 576, 576, 1024, 1024, 1024]


@pytest.mark.parametrize("norm,count", [("torch", 11_188_288), ("none", 11_178_336)])
def test_bn_inception_size(norm, count):
    model = BNInception((3, 224, 224), 1000, norm_layer=NORMS[norm])
    assert n_params(model) == count
    assert [m.out_channels for m in model.blocks] == BN_INCEPTION_CHANNELS
    assert model.num_features == 1024
    assert model.classifier.in_features == 1024 and model.classifier.out_features == 1000


def test_bn_inception_forward_backward():
    torch.manual_seed(0)
    model = BNInception((3, 224, 224), 1000, norm_layer=NORMS["torch"], dropout=0.4)
    x = torch.randn(2, 3, 224, 224)
    channels = []
    hooks = [m.register_forward_hook(lambda m, i, out: channels.append(out.shape[1])) for m in model.blocks]
    logits = model(x)
    for h in hooks:
        h.remove()
    assert logits.shape == (2, 1000)
    assert channels == BN_INCEPTION_CHANNELS  # the concatenated branches give the listed widths
    torch.nn.functional.cross_entropy(logits, torch.tensor([3, 999])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.stem[0].weight.grad.abs().sum() > 0  # reached the first convolution


# --------------------------------------------------------------------------- InceptionMini


def mini(**kwargs) -> InceptionMini:
    return InceptionMini(MNIST, 10, **kwargs)


@pytest.mark.parametrize("norm", NORMS, ids=str)
def test_mini_forward(norm):
    torch.manual_seed(0)
    model = mini(norm_layer=NORMS[norm])
    out = model(torch.rand(4, 1, 28, 28))
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("lrn,count", [(False, 0), (True, 2)])
def test_mini_lrn(lrn, count):
    model = mini(lrn=lrn)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == count


@pytest.mark.parametrize("p", [0.0, 0.4])
def test_mini_dropout(p):
    dropouts = [m for m in mini(dropout=p).modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in dropouts] == ([p] if p > 0 else [])


@pytest.mark.parametrize("norm", ["torch", "bnbench"])
def test_mini_every_conv_followed_by_bn(norm):
    model = mini(norm_layer=NORMS[norm])
    convs = 0
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.children())
        for i, m in enumerate(children):
            if isinstance(m, nn.Conv2d):
                convs += 1
                assert m.bias is None
                assert i + 1 < len(children) and is_batch_norm(children[i + 1])
                assert children[i + 1].num_features == m.out_channels
    assert convs == sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 0


def test_mini_without_norm_has_conv_biases():
    convs = [m for m in mini().modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.bias is not None for m in convs)
    assert not any(is_batch_norm(m) for m in mini().modules())


@pytest.mark.parametrize("activation,present,absent", [("sigmoid", nn.Sigmoid, nn.ReLU), ("relu", nn.ReLU, nn.Sigmoid)])
def test_mini_activation(activation, present, absent):
    model = mini(activation=activation, norm_layer=NORMS["torch"])
    assert any(isinstance(m, present) for m in model.modules())
    assert not any(isinstance(m, absent) for m in model.modules())
