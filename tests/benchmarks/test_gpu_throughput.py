"""BN-Inception throughput on a CUDA device (-m gpu; skipped without one): a bare PyTorch
training step on random 224x224 images, bf16 autocast + channels_last against fp32, and the
own BatchNorm against torch's, side by side. Prints images per second; asserts no time.

    pytest -o addopts="" tests/benchmarks/test_gpu_throughput.py --benchmark-only -s
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bnbench.models.inception import BNInception
from bnbench.nn.norm import create_norm
from timing import report, side_by_side

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def make_step(batch: int, bf16: bool, channels_last: bool, impl: str = "torch"):
    """One SGD step of BN-Inception (ends with a device sync, so that a call's time is the step's)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = BNInception([3, 224, 224], 1000, create_norm("batch", impl), "relu", 0.4, False).cuda()
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.0015, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device="cuda").to(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()

    for _ in range(10):  # cuDNN's algorithm search and the allocator settle here
        step()
    return step


def images_per_s(benchmark, batch: int, medians: dict[str, float]) -> None:
    rates = {k: batch / v for k, v in medians.items()}
    benchmark.extra_info.update({f"images_per_s_{k}": v for k, v in rates.items()})
    print(f"[bench] images/s at batch {batch}: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))


@pytest.fixture(autouse=True)
def cudnn_benchmark():
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    yield
    torch.backends.cudnn.benchmark = before


@pytest.mark.parametrize("batch", [32, 128])
def test_bf16_channels_last_against_fp32(benchmark, batch):
    steps = {"bf16_channels_last": make_step(batch, True, True), "fp32": make_step(batch, False, False)}
    medians = side_by_side(steps, rounds=40)
    report(benchmark, f"BN-Inception step, batch {batch}, {torch.cuda.get_device_name()}", medians,
           unit="ms", scale=1e3)
    images_per_s(benchmark, batch, medians)
    benchmark.pedantic(steps["bf16_channels_last"], rounds=5, iterations=1)


def test_own_batchnorm_against_torch_in_bn_inception(benchmark):
    batch = 32
    steps = {"bnbench": make_step(batch, True, True, "bnbench"), "torch": make_step(batch, True, True, "torch")}
    medians = side_by_side(steps, rounds=40)
    report(benchmark, f"BN-Inception step, bf16 channels_last, batch {batch}, BN implementation", medians,
           unit="ms", scale=1e3)
    images_per_s(benchmark, batch, medians)
    benchmark.pedantic(steps["bnbench"], rounds=5, iterations=1)
