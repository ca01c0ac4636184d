"""bnbench.nn.lrn: the fast local response normalization gives torch's values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from bnbench.nn.lrn import LocalResponseNorm, _LocalResponseNorm

SHAPES = {"NCL": (3, 7, 5), "NCHW": (4, 9, 3, 5), "NHWC": (4, 9, 3, 5), "NCDHW": (2, 6, 2, 3, 4)}


def inputs(shape_name: str, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[shape_name]
    x = torch.randn(shape, generator=g, dtype=dtype) * 4  # squares well above k, so the window sums matter
    grad = torch.randn(shape, generator=g, dtype=dtype)
    if shape_name == "NHWC":
        x, grad = (t.contiguous(memory_format=torch.channels_last) for t in (x, grad))
    return x.requires_grad_(), grad


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 12])  # even sizes: the window is not centred; 12 > C
def test_values_and_gradients_match_torch(shape_name, size):
    x, grad = inputs(shape_name)
    params = dict(size=size, alpha=0.3, beta=0.75, k=1.5)  # alpha large enough that neighbours count
    ours, theirs = LocalResponseNorm(**params), nn.LocalResponseNorm(**params)
    y, y_ref = ours(x), theirs(x)
    assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    dx, = torch.autograd.grad(y, x, grad)
    dx_ref, = torch.autograd.grad(y_ref, x, grad)
    assert_close(dx, dx_ref, rtol=1e-10, atol=1e-12)
    if shape_name == "NHWC":  # the layout goes through, for the next convolution
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert dx.is_contiguous(memory_format=torch.channels_last)


def test_gradcheck():
    x, _ = inputs("NCHW")
    assert torch.autograd.gradcheck(lambda t: _LocalResponseNorm.apply(t, 4, 0.5, 0.6, 2.0), (x,))


def test_googlenet_parameters_in_float32_and_bfloat16():
    """inception's own setting (size 5, alpha 1e-4, beta 0.75, k 1) in the dtypes runs use; the
    result keeps the input's dtype, also under autocast. (torch's has no bfloat16 4-d kernel on
    CPU: its float32 result, rounded, is the reference there.)"""
    x64, grad = inputs("NHWC")
    ours, theirs = LocalResponseNorm(5, 1e-4, 0.75, 1.0), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)
    for dtype, tol in ((torch.float32, dict(rtol=1e-6, atol=1e-6)), (torch.bfloat16, dict(rtol=2e-2, atol=2e-2))):
        x = x64.detach().to(dtype).requires_grad_()
        x32 = x.detach().float().requires_grad_()
        y, y_ref = ours(x), theirs(x32)
        assert y.dtype == dtype
        assert_close(y, y_ref.to(dtype), **tol)
        dx, = torch.autograd.grad(y, x, grad.to(dtype))
        dx_ref, = torch.autograd.grad(y_ref, x32, grad.to(dtype).float())
        assert_close(dx, dx_ref.to(dtype), **tol)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours(x64.detach().float()).dtype == torch.float32


def test_is_a_torch_local_response_norm_and_refuses_2d_inputs():
    layer = LocalResponseNorm(5, 1e-4, 0.75, 1.0)
    assert isinstance(layer, nn.LocalResponseNorm)
    assert repr(layer) == repr(nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0))
    with pytest.raises(ValueError, match=r"3 or more dimensions, got \(4, 6\)"):
        layer(torch.randn(4, 6))


def test_without_grad():
    x, _ = inputs("NCHW")
    with torch.no_grad():
        assert_close(LocalResponseNorm(3, 0.3, 0.75, 1.5)(x), F.local_response_norm(x, 3, 0.3, 0.75, 1.5))
