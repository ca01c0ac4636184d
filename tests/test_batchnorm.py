"""Own Batch Normalization (Alg. 1 and 2), the norm factory and population statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from bnbench.errors import ConfigError
from bnbench.nn.batchnorm import BatchNorm
from bnbench.nn.norm import create_norm, is_batch_norm
from bnbench.nn.population import estimate_population_statistics

C = 3
SHAPES = {"NC": (8, C), "NCHW": (4, C, 5, 6)}
DTYPES = [torch.float64, torch.float32]


def tol(dtype):
    """Tight for float64, float-noise for float32."""
    return dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)


def own_bn(momentum=0.1, eps=1e-5, dtype=torch.float64, seed=0):
    """An own BN layer with non-trivial gamma and beta."""
    bn = BatchNorm(C, eps=eps, momentum=momentum).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(C, generator=g, dtype=dtype) + 0.5)
        bn.bias.copy_(torch.randn(C, generator=g, dtype=dtype))
    return bn


def torch_bn_class(shape):
    return nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d


# --------------------------------------------------------------------------- Alg. 1, training


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("momentum,eps", [(0.1, 1e-5), (0.7, 1e-3)])
def test_training_forward_backward_matches_functional(shape, dtype, momentum, eps):
    torch.manual_seed(0)
    x = (torch.randn(shape, dtype=dtype) * 3 + 2).requires_grad_()
    upstream = torch.randn(shape, dtype=dtype)
    bn = own_bn(momentum, eps, dtype)

    weight = bn.weight.detach().clone().requires_grad_()
    bias = bn.bias.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    rm, rv = torch.zeros(C, dtype=dtype), torch.ones(C, dtype=dtype)
    y_ref = F.batch_norm(x_ref, rm, rv, weight, bias, training=True, momentum=momentum, eps=eps)

    y = bn(x)
    assert y.shape == x.shape and y.dtype == dtype
    assert_close(y, y_ref, **tol(dtype))

    y.backward(upstream)
    y_ref.backward(upstream)
    assert_close(x.grad, x_ref.grad, **tol(dtype))
    assert_close(bn.weight.grad, weight.grad, **tol(dtype))
    assert_close(bn.bias.grad, bias.grad, **tol(dtype))
    # One update of the running statistics, as F.batch_norm does it in place.
    assert_close(bn.running_mean, rm, **tol(dtype))
    assert_close(bn.running_var, rv, **tol(dtype))
    assert bn.num_batches_tracked.item() == 1


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_training_output_is_normalized_per_feature(shape):
    """With gamma=1, beta=0 every feature has mean 0 and (biased) variance ~1 over batch and positions."""
    torch.manual_seed(1)
    x = torch.randn(shape, dtype=torch.float64) * 5 - 3
    y = BatchNorm(C, eps=0.0).double()(x)
    dims = [0, *range(2, x.dim())]
    assert_close(y.mean(dim=dims), torch.zeros(C, dtype=torch.float64), atol=1e-12, rtol=0)
    assert_close(y.var(dim=dims, unbiased=False), torch.ones(C, dtype=torch.float64))


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0, None])
def test_running_statistics_match_torch_batchnorm(shape, momentum):
    torch.manual_seed(2)
    ours = BatchNorm(C, momentum=momentum).double()
    ref = torch_bn_class(shape)(C, momentum=momentum).double()
    for k in range(5):
        x = torch.randn(shape, dtype=torch.float64) * (k + 1) + k
        assert_close(ours(x), ref(x))
    assert_close(ours.running_mean, ref.running_mean, rtol=1e-12, atol=1e-12)
    assert_close(ours.running_var, ref.running_var, rtol=1e-12, atol=1e-12)
    assert ours.num_batches_tracked.item() == ref.num_batches_tracked.item() == 5
    # The statistics moved away from their initial values (the check could fail).
    assert not torch.allclose(ours.running_mean, torch.zeros(C, dtype=torch.float64))


def test_running_statistics_pytorch_convention_by_hand():
    """running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance."""
    torch.manual_seed(3)
    bn = BatchNorm(C, momentum=0.2).double()
    x1, x2 = torch.randn(2, 10, C, dtype=torch.float64)
    bn(x1)
    bn(x2)
    mean = 0.8 * (0.8 * 0.0 + 0.2 * x1.mean(0)) + 0.2 * x2.mean(0)
    var = 0.8 * (0.8 * 1.0 + 0.2 * x1.var(0, unbiased=True)) + 0.2 * x2.var(0, unbiased=True)
    assert_close(bn.running_mean, mean)
    assert_close(bn.running_var, var)


def test_cumulative_average_with_momentum_none():
    torch.manual_seed(4)
    bn = BatchNorm(C, momentum=None).double()
    xs = torch.randn(4, 6, C, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1).double()
    for x in xs:
        bn(x)
    assert_close(bn.running_mean, xs.mean(1).mean(0))
    assert_close(bn.running_var, xs.var(1, unbiased=True).mean(0))


def test_training_under_autocast_like_torch():
    """Under autocast (trainer.precision=bf16-mixed) the input is bf16; the buffers stay float32."""
    torch.manual_seed(8)
    linear, x = nn.Linear(4, C), torch.randn(16, 4)
    ours, ref = BatchNorm(C), nn.BatchNorm1d(C)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = linear(x)
        assert h.dtype == torch.bfloat16  # the premise: a low-precision input from the layer before
        y_ref = ref(h)
        y = ours(h)
    assert_close(y.float(), y_ref.float(), rtol=0.05, atol=0.05)
    assert_close(ours.running_mean, ref.running_mean, rtol=0.02, atol=0.02)
    assert_close(ours.running_var, ref.running_var, rtol=0.02, atol=0.02)


def test_reset_running_stats():
    bn = BatchNorm(C)
    bn(torch.randn(4, C))
    bn.reset_running_stats()
    assert_close(bn.running_mean, torch.zeros(C))
    assert_close(bn.running_var, torch.ones(C))
    assert bn.num_batches_tracked.item() == 0


def test_state_dict_interchangeable_with_torch():
    """Same parameter and buffer names as nn.BatchNorm*d (norm.impl=torch|bnbench are interchangeable)."""
    torch.manual_seed(5)
    ours = own_bn(dtype=torch.float32)
    ours(torch.randn(8, C))
    ref = nn.BatchNorm1d(C)
    ref.load_state_dict(ours.state_dict())
    ours.eval(), ref.eval()
    x = torch.randn(5, C)
    assert_close(ours(x), ref(x))


# --------------------------------------------------------------------------- Alg. 2, inference


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_eval_is_the_fixed_affine_map_of_alg2(shape, dtype):
    torch.manual_seed(6)
    eps = 1e-3
    bn = own_bn(eps=eps, dtype=dtype)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(C, dtype=dtype))
        bn.running_var.copy_(torch.rand(C, dtype=dtype) + 0.1)
    bn.eval()
    x = torch.randn(shape, dtype=dtype)
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    y = bn(x)

    view = (1, C) + (1,) * (len(shape) - 2)
    gamma, beta = bn.weight.detach(), bn.bias.detach()
    denom = torch.sqrt(bn.running_var + eps)
    scale = (gamma / denom).view(view)
    shift = (beta - gamma * bn.running_mean / denom).view(view)
    assert_close(y, scale * x + shift, **tol(dtype))
    # Inference does not touch the statistics, and agrees with torch's eval mode.
    assert_close(bn.running_mean, before[0], rtol=0, atol=0)
    assert_close(bn.running_var, before[1], rtol=0, atol=0)
    assert bn.num_batches_tracked.item() == before[2].item()
    y_ref = F.batch_norm(x, bn.running_mean, bn.running_var, gamma, beta, training=False, eps=eps)
    assert_close(y, y_ref, **tol(dtype))


def test_eval_single_example_is_allowed():
    bn = BatchNorm(C).eval()
    assert bn(torch.randn(1, C)).shape == (1, C)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("shape", [(1, C), (1, C, 1, 1)])
def test_batch_of_one_value_per_feature_raises_in_training(shape):
    bn = BatchNorm(C)
    with pytest.raises(ValueError, match="more than one value"):
        bn(torch.randn(shape))
    assert bn.num_batches_tracked.item() == 0  # nothing was updated


def test_single_example_with_spatial_positions_is_fine():
    """For convolutions m' = m * p * q (Sec. 3.2): one image with several positions is a valid batch."""
    x = torch.randn(1, C, 2, 2, dtype=torch.float64)
    assert_close(BatchNorm(C).double()(x), nn.BatchNorm2d(C).double()(x))


@pytest.mark.parametrize("momentum", [0.0, -0.1, 1.01, 10.0, float("nan")])
def test_invalid_momentum_raises(momentum):
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(C, momentum=momentum)


@pytest.mark.parametrize("momentum", [1e-6, 0.1, 1.0, None])
def test_valid_momentum_accepted(momentum):
    assert BatchNorm(C, momentum=momentum).momentum == momentum


# --------------------------------------------------------------------------- create_norm


def test_create_norm_none():
    assert create_norm("none") is None


@pytest.mark.parametrize("spatial,cls", [(False, nn.BatchNorm1d), (True, nn.BatchNorm2d)])
def test_create_norm_torch(spatial, cls):
    layer = create_norm("batch", impl="torch", eps=1e-3, momentum=0.3)(7, spatial)
    assert type(layer) is cls
    assert (layer.num_features, layer.eps, layer.momentum) == (7, 1e-3, 0.3)
    assert is_batch_norm(layer)


@pytest.mark.parametrize("spatial", [False, True])
def test_create_norm_bnbench(spatial):
    layer = create_norm("batch", impl="bnbench", eps=1e-3, momentum=0.3)(7, spatial)
    assert type(layer) is BatchNorm
    assert (layer.num_features, layer.eps, layer.momentum) == (7, 1e-3, 0.3)
    assert is_batch_norm(layer)


def test_create_norm_ignores_inference_keys():
    assert create_norm("batch", impl="torch", inference="population", population_batches=10) is not None


@pytest.mark.parametrize(
    "kwargs,key",
    [
        (dict(kind="layer"), "norm.kind"),
        (dict(kind="batch", impl="tensorflow"), "norm.impl"),
        (dict(kind="batch", momentum=0.0), "norm.momentum"),
        (dict(kind="batch", momentum=0.99 + 1), "norm.momentum"),
        (dict(kind="batch", momentum=-0.5), "norm.momentum"),
    ],
)
def test_create_norm_bad_config_names_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        create_norm(**kwargs)


def test_is_batch_norm_rejects_other_modules():
    assert not is_batch_norm(nn.LayerNorm(3))
    assert not is_batch_norm(nn.Linear(3, 3))


# --------------------------------------------------------------------------- population statistics


def make_bn(impl: str, spatial: bool, momentum=0.1) -> nn.Module:
    return create_norm("batch", impl=impl, momentum=momentum)(C, spatial)


def batches_for(spatial: bool, k: int, m: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (m, 2, 5, 5) if spatial else (m, C)
    return [torch.randn(shape, generator=g, dtype=torch.float64) * (i + 1) + i for i in range(k)]


def expected_population(features: list[torch.Tensor]):
    """Alg. 2 by hand: E[x] = mean of batch means; Var[x] = m/(m-1) * mean of biased batch variances."""
    dims = [0, *range(2, features[0].dim())]
    m = features[0].numel() // features[0].shape[1]
    means = torch.stack([f.mean(dim=dims) for f in features])
    variances = torch.stack([f.var(dim=dims, unbiased=False) for f in features])
    return means.mean(0), m / (m - 1) * variances.mean(0)


@pytest.mark.parametrize("impl", ["torch", "bnbench"])
@pytest.mark.parametrize("spatial", [False, True], ids=["fc", "conv"])
@pytest.mark.parametrize("training", [True, False])
def test_population_statistics(impl, spatial, training):
    torch.manual_seed(7)
    pre = nn.Conv2d(2, C, 3) if spatial else nn.Identity()
    bn = make_bn(impl, spatial, momentum=0.3)
    # Dropout with p=0.99 would wreck the statistics if it ran in training mode.
    model = nn.Sequential(nn.Dropout(p=0.99), pre, bn).double()
    with torch.no_grad():  # stale statistics that must be discarded
        model.train()(batches_for(spatial, 1, 4, seed=99)[0])
    model.train(training)

    batches = batches_for(spatial, k=6, m=5)
    with torch.no_grad():
        features = [pre(x) for x in batches]
    mean, var = expected_population(features)

    used = estimate_population_statistics(model, iter([(x, torch.zeros(len(x))) for x in batches]), num_batches=6)
    assert used == 6
    assert_close(bn.running_mean, mean)
    assert_close(bn.running_var, var)
    assert bn.num_batches_tracked.item() == 6
    # Momentum and training flags are restored.
    assert bn.momentum == 0.3
    assert model.training is training
    assert all(mod.training is training for mod in model.modules())
    # No gradient was recorded.
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("impl", ["torch", "bnbench"])
def test_population_statistics_only_first_num_batches_plain_tensors(impl):
    bn = make_bn(impl, spatial=False)
    model = nn.Sequential(bn).double()
    batches = batches_for(False, k=5, m=4)
    used = estimate_population_statistics(model, iter(batches), num_batches=3)
    assert used == 3
    mean, var = expected_population(batches[:3])
    assert_close(bn.running_mean, mean)
    assert_close(bn.running_var, var)


@pytest.mark.parametrize("impl", ["torch", "bnbench"])
def test_population_statistics_fewer_batches_than_asked(impl):
    bn = make_bn(impl, spatial=False)
    model = nn.Sequential(bn).double()
    batches = batches_for(False, k=2, m=4)
    assert estimate_population_statistics(model, iter(batches), num_batches=10) == 2
    mean, var = expected_population(batches)
    assert_close(bn.running_mean, mean)
    assert_close(bn.running_var, var)


def test_population_statistics_other_modules_stay_in_eval_while_running():
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    bn = BatchNorm(C)
    bn_seen = []
    bn.register_forward_pre_hook(lambda mod, inp: bn_seen.append(mod.training))
    model = nn.Sequential(Spy(), nn.Dropout(0.5), bn).train()
    estimate_population_statistics(model, [torch.randn(4, C)] * 2, num_batches=2)
    assert seen == [False, False]
    assert bn_seen == [True, True]
    assert model.training and model[0].training


def test_population_statistics_restores_momentum_after_error():
    bn = BatchNorm(C, momentum=0.25)
    model = nn.Sequential(bn).train()
    with pytest.raises(ValueError):  # a batch of one example: BN refuses it
        estimate_population_statistics(model, [torch.randn(1, C)], num_batches=1)
    assert bn.momentum == 0.25
    assert model.training


def test_population_statistics_without_bn_layers():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    assert estimate_population_statistics(model, [torch.randn(4, 3)], num_batches=1) == 0
    assert model.training


def test_population_estimate_with_no_batches_keeps_the_statistics():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(4, C), BatchNorm(C))
    model.train()
    model(torch.randn(16, 4))
    before = model[1].running_mean.clone(), model[1].running_var.clone()
    assert estimate_population_statistics(model, iter([]), 10) == 0
    assert_close(model[1].running_mean, before[0])
    assert_close(model[1].running_var, before[1])


def test_population_estimate_restores_per_module_modes():
    model = nn.Sequential(nn.Linear(4, C), BatchNorm(C), nn.Dropout(0.5))
    model.train()
    model[1].eval()  # a caller's frozen BN inside a training model
    estimate_population_statistics(model, [torch.randn(8, 4)], 1)
    assert [m.training for m in model] == [True, False, True]


@pytest.mark.parametrize("eps", [0, -1e-5, None])
def test_create_norm_rejects_bad_eps(eps):
    with pytest.raises(ConfigError, match="norm.eps"):
        create_norm("batch", eps=eps)


def test_create_norm_rejects_null_momentum():
    with pytest.raises(ConfigError, match="norm.momentum"):
        create_norm("batch", momentum=None)
