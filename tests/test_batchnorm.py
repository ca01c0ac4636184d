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


@pytest.mark.parametrize("kernel", ["fast", "reference"])
def test_training_under_autocast_like_torch(kernel):
    """Under autocast (trainer.precision=bf16-mixed) the input is bf16; the buffers stay float32."""
    torch.manual_seed(8)
    linear, x = nn.Linear(4, C), torch.randn(16, 4)
    ours, ref = BatchNorm(C, kernel=kernel), nn.BatchNorm1d(C)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = linear(x)
        assert h.dtype == torch.bfloat16  # the premise: a low-precision input from the layer before
        y_ref = ref(h)
        y = ours(h)
    assert y.dtype == torch.bfloat16  # the input's dtype, as torch's BN gives
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


def test_inference_reuses_its_affine_map_until_a_parameter_or_statistic_changes():
    """Under no_grad the eval map (scale, shift) is kept between calls (BatchNorm._inference_affine);
    every way gamma, beta or the estimates change must show in the next output."""
    torch.manual_seed(7)
    bn = own_bn(dtype=torch.float32)
    x = torch.randn(6, C, 4, 4)

    def expected():
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias.detach() - bn.running_mean * scale
        return scale.view(1, C, 1, 1) * x + shift.view(1, C, 1, 1)

    def check():
        bn.eval()
        with torch.no_grad():
            first, again = bn(x), bn(x)
        assert torch.equal(first, again)
        assert_close(first, expected(), rtol=1e-5, atol=1e-6)

    check()
    cached = bn._affine_cache
    check()
    assert bn._affine_cache is cached  # reused, not recomputed
    bn.train()
    bn(torch.randn(6, C, 4, 4))  # the moving averages move (in place)
    check()
    for param in (bn.weight, bn.bias):  # gamma alone, then beta alone, moves (in place)
        param.grad = torch.ones(C)
        torch.optim.SGD([param], lr=0.5).step()
        check()
    for buffer in (bn.running_mean, bn.running_var):  # one estimate alone, in place
        buffer.mul_(1.5)
        check()
    other = own_bn(dtype=torch.float32, seed=3)
    bn.load_state_dict(other.state_dict())
    check()
    bn.running_var = torch.full((C,), 4.0)  # a new tensor in place of the buffer
    check()
    bn.eps = 0.5
    check()
    bn.double()  # .to() swaps the parameters' data
    x = x.double()
    bn.eval()
    with torch.no_grad():
        assert bn(x).dtype == torch.float64
    assert_close(bn(x).detach(), expected(), rtol=1e-10, atol=1e-10)
    # With gradients wanted the map is built afresh, and gamma and beta get their gradients.
    bn.weight.grad = bn.bias.grad = None
    bn(x).sum().backward()
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0


def test_a_frozen_bn_evaluated_under_inference_mode_still_trains_its_input():
    """Lightning evaluates under torch.inference_mode; a frozen BN (eval mode, no parameter
    gradients, as in fine-tuning) must then still pass gradients to its input in training."""
    bn = own_bn(dtype=torch.float32).eval()
    bn.requires_grad_(False)
    x = torch.randn(6, C, 4, 4)
    with torch.inference_mode():
        bn(x)
    x.requires_grad_(True)
    bn(x).sum().backward()
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert_close(x.grad, scale.view(1, C, 1, 1).expand_as(x), rtol=1e-5, atol=1e-6)


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


# --------------------------------------------------------------------------- kernels: fast, compiled


def kernel_step(kernel: str, x: torch.Tensor, upstream: torch.Tensor, momentum=0.1, seed=0, steps=2, **kwargs):
    """Training steps of an own BN layer (float32 parameters, non-trivial gamma/beta) with `kernel`:
    the last output, the gradients of x, gamma and beta, and the running statistics."""
    bn = BatchNorm(x.shape[1], momentum=momentum, kernel=kernel, **kwargs)
    if x.dtype == torch.float64:
        bn.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=g))
    x = x.detach().clone().requires_grad_(x.requires_grad)
    for _ in range(steps):
        bn.zero_grad()
        x.grad = None
        y = bn(x)
        y.backward(upstream)
    return dict(y=y.detach(), dx=x.grad, dgamma=bn.weight.grad, dbeta=bn.bias.grad, running_mean=bn.running_mean,
                running_var=bn.running_var, steps=bn.num_batches_tracked.item())


def assert_bf16_step_matches_torch(ours: dict, x: torch.Tensor, upstream: torch.Tensor) -> nn.Module:
    """`ours` (a kernel_step of one step on bf16 `x`) against torch's BN given the same gamma and
    beta: output and dx in bf16, to bf16 rounding; returns torch's layer (its running estimates)."""
    shape = x.shape
    ref_bn = torch_bn_class(shape)(shape[1]) if len(shape) != 3 else nn.BatchNorm1d(shape[1])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ref_bn.weight.copy_(torch.rand(shape[1], generator=g) + 0.5)
        ref_bn.bias.copy_(torch.randn(shape[1], generator=g))
    x_ref = x.detach().clone().requires_grad_()
    y_ref = ref_bn(x_ref)
    y_ref.backward(upstream)
    assert ours["y"].dtype == ours["dx"].dtype == torch.bfloat16 and y_ref.dtype == torch.bfloat16
    assert_close(ours["y"].float(), y_ref.float(), rtol=0.02, atol=0.02)
    assert_close(ours["dx"].float(), x_ref.grad.float(), rtol=0.02, atol=0.02)
    assert_close(ours["dgamma"], ref_bn.weight.grad, rtol=0.02, atol=0.05)
    assert_close(ours["dbeta"], ref_bn.bias.grad, rtol=0.02, atol=0.05)
    return ref_bn


KERNEL_SHAPES = {"NC": (16, 5), "NCL": (4, 5, 7), "NCHW": (4, 5, 3, 6)}


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", KERNEL_SHAPES.values(), ids=KERNEL_SHAPES.keys())
def test_fast_kernel_matches_the_reference(shape, dtype, momentum):
    """The default kernel ("fast") gives Alg. 1's results: float64 to rounding, float32 to float noise."""
    torch.manual_seed(10)
    view = (1, shape[1]) + (1,) * (len(shape) - 2)
    offset = torch.tensor([0.0, -3.0, 1e3, 5.0, 0.5], dtype=dtype).view(view)  # one feature far from 0
    x = (torch.randn(shape, dtype=dtype) * 2 + offset).requires_grad_()
    upstream = torch.randn(shape, dtype=dtype)
    fast, ref = kernel_step("fast", x, upstream, momentum), kernel_step("reference", x, upstream, momentum)
    assert fast["y"].dtype == dtype and fast["dx"].dtype == dtype
    tolerance = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for key in ("y", "dx", "dgamma", "dbeta", "running_mean", "running_var"):
        assert_close(fast[key], ref[key], **tolerance, msg=key)
    assert fast["steps"] == ref["steps"] == 2


@pytest.mark.parametrize("shape", KERNEL_SHAPES.values(), ids=KERNEL_SHAPES.keys())
def test_fast_kernel_with_bfloat16_input_matches_torch(shape):
    """A bf16 input with float32 parameters and statistics (as under autocast): statistics in float32,
    the output and dx in bf16, like torch.nn.BatchNorm (the reference would compute var_mean in bf16)."""
    torch.manual_seed(11)
    x = (torch.randn(shape) * 3 + 2).to(torch.bfloat16).requires_grad_()
    upstream = torch.randn(shape).to(torch.bfloat16)
    ours = kernel_step("fast", x, upstream, steps=1)
    ref_bn = assert_bf16_step_matches_torch(ours, x, upstream)
    assert_close(ours["running_mean"], ref_bn.running_mean, rtol=1e-3, atol=1e-3)
    assert_close(ours["running_var"], ref_bn.running_var, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kernel", ["fast", "reference"])
def test_kernels_on_non_contiguous_input_and_frozen_parts(kernel):
    """channels_last and transposed inputs; an input that needs no gradient; frozen gamma/beta."""
    torch.manual_seed(12)
    x = torch.randn(4, 5, 3, 6, dtype=torch.float64)
    upstream = torch.randn(4, 5, 3, 6, dtype=torch.float64)
    contiguous = kernel_step("reference", x.requires_grad_(), upstream)
    channels_last = kernel_step(kernel, x.to(memory_format=torch.channels_last).requires_grad_(), upstream)
    for key in ("y", "dx", "dgamma", "dbeta", "running_mean", "running_var"):
        assert_close(channels_last[key], contiguous[key], rtol=1e-10, atol=1e-10, msg=key)

    x2 = torch.randn(5, 16, dtype=torch.float64).t()  # (16, 5), not contiguous
    up2 = torch.randn(16, 5, dtype=torch.float64)
    transposed, contiguous2 = kernel_step(kernel, x2.requires_grad_(), up2), kernel_step("reference", x2.contiguous(), up2)
    for key in ("y", "dx", "dgamma", "dbeta", "running_mean", "running_var"):
        assert_close(transposed[key], contiguous2[key], rtol=1e-10, atol=1e-10, msg=key)

    no_grad_input = kernel_step(kernel, x.detach(), upstream)
    assert no_grad_input["dx"] is None
    assert_close(no_grad_input["dgamma"], contiguous["dgamma"], rtol=1e-10, atol=1e-10)
    bn = BatchNorm(5, kernel=kernel).double().requires_grad_(False)
    xg = x.detach().requires_grad_()
    bn(xg).backward(upstream)
    assert xg.grad is not None and bn.weight.grad is None


def test_eval_keeps_the_input_dtype():
    """Inference under autocast: a bf16 input gives a bf16 output, computed in float32 (as torch does)."""
    torch.manual_seed(13)
    ours, ref = BatchNorm(C), nn.BatchNorm1d(C)
    ours(torch.randn(16, C) * 2 + 1), ref(torch.randn(16, C))
    ref.load_state_dict(ours.state_dict())
    ours.eval(), ref.eval()
    x = torch.randn(8, C).to(torch.bfloat16)
    y = ours(x)
    assert y.dtype == torch.bfloat16
    assert_close(y, ref(x), rtol=0.01, atol=0.01)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_in_nhwc_matches_nchw(dtype):
    """NHWC inputs (CPU runs' layout) take a fused path in inference: the same values as NCHW
    (to one rounding), the input's layout and dtype kept, under no_grad and with gradients wanted."""
    torch.manual_seed(14)
    bn = own_bn(dtype=torch.float32)
    bn(torch.randn(6, C, 4, 4) * 2 + 1)  # non-trivial running estimates
    bn.eval()
    x = torch.randn(5, C, 4, 3).to(dtype)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, got = bn(x), bn(nhwc)
    assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
    tolerance = dict(rtol=0.01, atol=0.01) if dtype == torch.bfloat16 else dict(rtol=1e-6, atol=1e-6)
    assert_close(got, expected, **tolerance)
    xg = nhwc.detach().requires_grad_()
    bn(xg).sum().backward()
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    assert_close(xg.grad.float(), scale.view(1, C, 1, 1).expand(5, C, 4, 3), rtol=0.01, atol=1e-2)
    assert bn.weight.grad is not None


def test_unknown_kernel_raises():
    with pytest.raises(ValueError, match="kernel"):
        BatchNorm(C, kernel="triton")


def test_compiled_kernel_falls_back_to_fast_when_torch_compile_fails(monkeypatch):
    """Without a working torch.compile (no C++ compiler, say) kernel='compiled' warns and runs 'fast'."""
    import torch._dynamo.exc

    from bnbench.nn import batchnorm

    def broken_compile(fn, **_):
        def compiled(*args):
            raise torch._dynamo.exc.BackendCompilerFailed(broken_compile, RuntimeError("no C++ compiler"), None)
        return compiled

    monkeypatch.setattr(batchnorm, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    torch.manual_seed(14)
    x, upstream = torch.randn(6, 4, 5, dtype=torch.float64).requires_grad_(), torch.randn(6, 4, 5, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="no C.. compiler"):
        compiled = kernel_step("compiled", x, upstream)
    fast = kernel_step("fast", x, upstream)
    for key in ("y", "dx", "dgamma", "dbeta", "running_mean", "running_var"):
        assert torch.equal(compiled[key], fast[key]), key


def test_compiled_kernel_matches_the_reference():
    """torch.compile of the fast kernel: the reference's results, 2-d and 4-d, and after a change of batch size
    (~10 s: Inductor compiles each graph once per process, then shapes become dynamic)."""
    from bnbench.nn import batchnorm

    try:
        torch.compile(lambda t: t * 2)(torch.ones(2))
    except Exception as err:  # noqa: BLE001 -- any failure: no compiled kernel on this machine
        pytest.skip(f"torch.compile does not work here: {err}")
    torch.manual_seed(15)
    for shape in [(16, 5), (4, 5, 3, 6), (6, 5, 3, 6)]:
        x = (torch.randn(shape) * 2 + 1).requires_grad_()
        upstream = torch.randn(shape)
        compiled, ref = kernel_step("compiled", x, upstream), kernel_step("reference", x, upstream)
        for key in ("y", "dx", "dgamma", "dbeta", "running_mean", "running_var"):
            assert_close(compiled[key], ref[key], rtol=1e-4, atol=1e-4, msg=f"{shape} {key}")
    assert all(batchnorm._COMPILED[k] is not k for k in (batchnorm._fast_forward, batchnorm._fast_backward))
