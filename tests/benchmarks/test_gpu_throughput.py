"""BN-Inception throughput on a CUDA device (-m gpu; skipped without one): a bare PyTorch
training step on random 224x224 images, bf16 autocast + channels_last against fp32; the same
steps through the harness (Lightning + Classifier, data=synthetic) against by hand; the own
BatchNorm against torch's, in the network and as one layer. Side by side; prints images per
second and ratios; asserts no time.

    pytest -o addopts="" tests/benchmarks/test_gpu_throughput.py --benchmark-only -s
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bnbench.models.inception import BNInception
from bnbench.nn.norm import create_norm
from timing import bare_seconds_per_step, gpu_overrides, report, report_against, seconds_per_step, side_by_side

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


NO_DISTORTION = ["recipe.distortion.brightness=0", "recipe.distortion.contrast=0", "recipe.distortion.saturation=0",
                 "recipe.distortion.hue=0"]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("batch", [32, 128])
def test_harness_against_a_bare_step(benchmark, batch, precision, tmp_path):
    """Roadmap target: BN-Inception through the harness at >= 95% of a bare step's images/s
    (batch 32 and 128, fp32 and bf16). Harness: `bnbench train model=bn_inception data=synthetic`
    as built by bnbench.train.build, under Lightning (timing.seconds_per_step); bare: the same
    model, optimizer, schedule and batch by hand (timing.bare_seconds_per_step). Both NHWC and
    without the recipe's photometric distortions (the bare step has none); the harness with them
    is timed beside, for their cost (one round). 20 warm-up steps, 60 timed, 2 rounds interleaved
    (sized for a short lease: ~35 s a parametrization on an H100-class GPU)."""
    overrides = gpu_overrides(["data=synthetic"], tmp_path, precision=precision, batch=batch)
    fns = {"harness": lambda: seconds_per_step([*overrides, *NO_DISTORTION], 20, 60),
           "bare": lambda: bare_seconds_per_step([*overrides, *NO_DISTORTION], 20, 60)}
    times = {name: [] for name in fns}
    for _ in range(2):
        for name, fn in fns.items():
            times[name].append(fn())
    medians = {name: min(ts) for name, ts in times.items()}  # the less disturbed of two whole runs
    medians["harness_distorted"] = seconds_per_step(overrides, 20, 60)
    report(benchmark, f"BN-Inception step through the harness, batch {batch}, {precision}, "
           f"{torch.cuda.get_device_name()}", medians, unit="ms", scale=1e3)
    images_per_s(benchmark, batch, medians)
    print(f"[bench] harness images/s / bare: {medians['bare'] / medians['harness']:.3f} (goal >= 0.95); "
          f"with the distortions: {medians['bare'] / medians['harness_distorted']:.3f}")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


LAYER_SHAPES = {"conv_128x256x28x28": (128, 256, 28, 28), "fc_128x1024": (128, 1024)}


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", LAYER_SHAPES.values(), ids=LAYER_SHAPES.keys())
def test_bn_layer_on_cuda(benchmark, shape, dtype, mode):
    """Roadmap target: the own BN within 1.2x of torch's on a GPU, every mode. One layer,
    forward + backward (train) or forward under no_grad (infer), NHWC for 4-d, each kernel of
    the own BN against torch's, side by side (each call synchronized). bf16: bf16 input,
    float32 parameters and statistics, as under autocast."""
    from torch import nn

    from bnbench.nn.batchnorm import BatchNorm

    torch.manual_seed(0)
    layout = torch.channels_last if len(shape) == 4 else torch.contiguous_format
    x = torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=layout)
    x.requires_grad_(mode == "train")
    grad = torch.randn_like(x)
    kernels = ("fast", "compiled") if mode == "train" else ("fast",)
    layers = {k: BatchNorm(shape[1], kernel=k).cuda() for k in kernels}
    layers["torch"] = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(shape[1]).cuda()
    for layer in layers.values():
        layer.train(mode == "train")

    def call(layer):
        if mode == "train":
            layer(x).backward(grad)
        else:
            with torch.no_grad():
                layer(x)
        torch.cuda.synchronize()

    for layer in layers.values():  # warm-up; "compiled" compiles here
        for _ in range(3):
            call(layer)
    medians = side_by_side({k: (lambda layer=layer: call(layer)) for k, layer in layers.items()}, rounds=100, inner=5)
    report_against(benchmark, f"BN {mode} on CUDA {tuple(shape)} {str(dtype)[6:]}", medians)
    benchmark.pedantic(call, args=(layers["fast"],), rounds=5, iterations=1)
