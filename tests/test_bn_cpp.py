"""The own BN's C++ CPU kernels (kernel="cpp": bnbench/nn/csrc/batchnorm.cpp, built by
bnbench/nn/cpp.py): Alg. 1's training step, Alg. 2's map with and without gradients, against the
reference kernel, torch's BN and gradcheck; where they do not apply (ghost and global statistics)
and where they cannot be built, kernel="fast" runs. The first test to load them builds them
(~20-40 s once per machine; then cached under ~/.cache/torch_extensions)."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.testing import assert_close

from bnbench.nn import cpp
from bnbench.nn.batchnorm import BatchNorm
from test_batchnorm import KERNEL_SHAPES, assert_bf16_step_matches_torch, kernel_step

KEYS = ("y", "dx", "dgamma", "dbeta", "running_mean", "running_var")
SHAPES = {**KERNEL_SHAPES, "NHWC": (4, 5, 3, 6)}  # NHWC: the NCHW shape in channels_last


@pytest.fixture(scope="module")
def ext():
    """The built extension; where there is no compiler to build it, the tests skip (saying so)."""
    if shutil.which("c++") is None or shutil.which("ninja") is None:
        pytest.skip("no C++ compiler or ninja: kernel='cpp' cannot be built here (it falls back to 'fast')")
    module = cpp.kernel()
    assert module is not None, "kernel='cpp' failed to build although a compiler and ninja are installed"
    return module


def layout(x: torch.Tensor, name: str) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if name == "NHWC" else x


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", SHAPES)
def test_cpp_training_step_matches_the_reference(ext, name, dtype, momentum):
    """Alg. 1 and its backward in C++: the reference kernel's results (float64 to rounding,
    float32 to float noise), running estimates included, one feature far from zero; the output
    keeps the input's layout."""
    torch.manual_seed(20)
    shape = SHAPES[name]
    view = (1, shape[1]) + (1,) * (len(shape) - 2)
    offset = torch.tensor([0.0, -3.0, 1e3, 5.0, 0.5], dtype=dtype).view(view)
    x = layout(torch.randn(shape, dtype=dtype) * 2 + offset, name).requires_grad_()
    upstream = layout(torch.randn(shape, dtype=dtype), name)
    ours, ref = kernel_step("cpp", x, upstream, momentum), kernel_step("reference", x, upstream, momentum)
    assert ours["y"].dtype == dtype and ours["dx"].dtype == dtype and ours["steps"] == 2
    assert ours["y"].is_contiguous(memory_format=torch.channels_last if name == "NHWC" else torch.contiguous_format)
    tolerance = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for key in KEYS:
        assert_close(ours[key], ref[key], **tolerance, msg=key)


@pytest.mark.parametrize("name", SHAPES)
def test_cpp_training_step_with_bfloat16_input_matches_torch(ext, name):
    """bf16 input, float32 parameters and statistics (as under autocast): torch's BN's results to
    bf16 rounding, in bf16."""
    torch.manual_seed(21)
    shape = SHAPES[name]
    x = layout((torch.randn(shape) * 3 + 2).to(torch.bfloat16), name).requires_grad_()
    upstream = layout(torch.randn(shape).to(torch.bfloat16), name)
    assert_bf16_step_matches_torch(kernel_step("cpp", x, upstream, steps=1), x, upstream)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", SHAPES)
def test_cpp_inference_matches_the_fast_kernel(ext, name, dtype):
    """Alg. 2's map: without gradients (kept scale and shift, one C++ pass) and with them (x, gamma
    and beta's gradients from one C++ node): the fast kernel's values and gradients, the input's
    dtype and layout kept."""
    torch.manual_seed(22)
    shape = SHAPES[name]
    x = layout((torch.randn(shape, dtype=torch.float64) * 2 + 1), name)
    upstream = layout(torch.randn(shape, dtype=torch.float64), name)
    results = {}
    for kernel in ("fast", "cpp"):
        bn = BatchNorm(shape[1], kernel=kernel).to(torch.float64 if dtype == torch.float64 else torch.float32)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            bn.weight.copy_(torch.rand(shape[1], generator=g) + 0.5)
            bn.bias.copy_(torch.randn(shape[1], generator=g))
            bn.running_mean.copy_(torch.randn(shape[1], generator=g))
            bn.running_var.copy_(torch.rand(shape[1], generator=g) + 0.2)
        bn.eval()
        with torch.no_grad():
            inferred = bn(x.to(dtype))
        xg = x.to(dtype).requires_grad_()
        y = bn(xg)
        y.backward(upstream.to(dtype))
        results[kernel] = dict(inferred=inferred, y=y.detach(), dx=xg.grad, dgamma=bn.weight.grad, dbeta=bn.bias.grad)
    tolerance = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5),
                 torch.bfloat16: dict(rtol=0.02, atol=0.05)}[dtype]
    fmt = torch.channels_last if name == "NHWC" else torch.contiguous_format
    for key, value in results["cpp"].items():
        if key in ("inferred", "y", "dx"):
            assert value.dtype == dtype and value.is_contiguous(memory_format=fmt), key
        assert_close(value.double(), results["fast"][key].double(), **tolerance, msg=key)


def test_cpp_kernels_pass_gradcheck(ext):
    """Each C++ function's backward against finite differences (float64), both layouts."""
    torch.manual_seed(23)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(6, 4, 3, 3, dtype=torch.float64).contiguous(memory_format=memory_format).requires_grad_()
        w = (torch.rand(4, dtype=torch.float64) + 0.5).requires_grad_()
        b = torch.randn(4, dtype=torch.float64, requires_grad=True)
        mean, var = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5

        def train(x, w, b):
            return ext.bn_train(x, w, b, torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64),
                                0.1, 1e-5)

        assert torch.autograd.gradcheck(train, (x, w, b))
        assert torch.autograd.gradcheck(lambda x, w, b: ext.bn_eval(x, w, b, mean, var, 1e-5), (x, w, b))
        assert torch.autograd.gradcheck(lambda x, w, b: ext.channel_affine(x, w, b), (x, w, b))


def test_cpp_on_non_contiguous_input_and_frozen_parts(ext):
    """A transposed input; an input that needs no gradient; frozen gamma and beta."""
    torch.manual_seed(24)
    x = torch.randn(5, 16, dtype=torch.float64).t()  # (16, 5), not contiguous
    upstream = torch.randn(16, 5, dtype=torch.float64)
    ours, ref = kernel_step("cpp", x.requires_grad_(), upstream), kernel_step("reference", x.contiguous(), upstream)
    for key in KEYS:
        assert_close(ours[key], ref[key], rtol=1e-10, atol=1e-10, msg=key)
    no_grad_input = kernel_step("cpp", x.detach(), upstream)
    assert no_grad_input["dx"] is None
    assert_close(no_grad_input["dgamma"], ref["dgamma"], rtol=1e-10, atol=1e-10)
    bn = BatchNorm(5, kernel="cpp").double().requires_grad_(False)
    xg = torch.randn(16, 5, dtype=torch.float64, requires_grad=True)
    bn(xg).backward(upstream)
    assert xg.grad is not None and bn.weight.grad is None


def test_ghost_statistics_run_the_fast_kernel(ext):
    """stats='ghost' (and 'global') are not in C++: kernel='cpp' runs 'fast' there, to the bit."""
    torch.manual_seed(25)
    x, upstream = torch.randn(8, 5, 3, dtype=torch.float64).requires_grad_(), torch.randn(8, 5, 3, dtype=torch.float64)
    ours = kernel_step("cpp", x, upstream, stats="ghost", ghost_size=4)
    fast = kernel_step("fast", x, upstream, stats="ghost", ghost_size=4)
    for key in KEYS:
        assert torch.equal(ours[key], fast[key]), key


def test_cpp_falls_back_to_fast_when_it_cannot_be_built(monkeypatch):
    """No compiler (the build raises): one warning naming the cause, then kernel='fast', to the bit."""
    import torch.utils.cpp_extension

    def broken_load(*args, **kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(cpp, "_state", {})
    monkeypatch.setattr(torch.utils.cpp_extension, "load", broken_load)
    torch.manual_seed(26)
    x, upstream = torch.randn(6, 4, 5, dtype=torch.float64).requires_grad_(), torch.randn(6, 4, 5, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="kernel='cpp' could not be built.*Ninja is required"):
        ours = kernel_step("cpp", x, upstream)
    fast = kernel_step("fast", x, upstream)
    for key in KEYS:
        assert torch.equal(ours[key], fast[key]), key
    assert cpp._state == {"module": None}  # tried once per process


def test_a_run_with_the_cpp_kernel(ext, tiny_data, tmp_path):
    """norm.impl=bnbench norm.kernel=cpp through `bnbench train`'s code path: the run completes and
    its BN layers are the C++ ones."""
    from conftest import compose

    from bnbench.train import run

    cfg = compose([f"data.root={tiny_data}", "logger=none", f"paths.results={tmp_path}", "experiment=mnist_bn",
                   "norm.impl=bnbench", "norm.kernel=cpp", "trainer.max_steps=20", "run.eval_every=10"])
    record = run(cfg)
    assert record["status"] == "completed" and record["config"]["norm"]["kernel"] == "cpp"
    assert record["best_acc"] > 0.3  # the tiny data's classes are easy: it learns

