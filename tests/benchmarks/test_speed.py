"""Speed figures (pytest-benchmark), measured side by side in one run; nothing asserts a time.

    make bench     (pytest -o addopts="" tests/benchmarks --benchmark-only -s)

Each benchmark times its candidates interleaved, round by round, so that a change in machine
load hits them alike, and reports the median per call and the ratio in the printed line and
in benchmark.extra_info (kept in .benchmarks/latest.json). One torch thread, as in a study job.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from bnbench.data.groups import Groups
from bnbench.data.in_memory import BatchStream
from bnbench.models.inception import InceptionMini
from bnbench.models.mlp import MLP
from bnbench.nn.batchnorm import BatchNorm
from bnbench.nn.norm import create_norm
from bnbench.recipe import Recipe
from bnbench.system import Classifier, parameter_groups
from timing import one_thread, report, report_against, side_by_side  # noqa: F401 (one_thread: a fixture)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/benchmarks/timing.py


BN_SHAPES = {"mlp_60x100": (60, 100), "conv_32x64x7x7": (32, 64, 7, 7)}
# test_bn_layer also times the 4-d case in NHWC, the layout of convolutional runs on CPU (run.channels_last)
BN_LAYOUTS = {**{k: (v, False) for k, v in BN_SHAPES.items()}, "conv_32x64x7x7_nhwc": ((32, 64, 7, 7), True)}
BN_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# train: forward + backward on batch statistics (Alg. 1); eval: forward + backward through the fixed
# affine map (frozen statistics, as in fine-tuning); infer: the forward alone under no_grad (Alg. 2).
BN_MODES = ("train", "eval", "infer")


@pytest.mark.parametrize("mode", BN_MODES)
@pytest.mark.parametrize("dtype", BN_DTYPES.values(), ids=BN_DTYPES.keys())
@pytest.mark.parametrize("case", BN_LAYOUTS.values(), ids=BN_LAYOUTS.keys())
def test_bn_layer(benchmark, case, dtype, mode):
    """bnbench's own BatchNorm against torch's nn.BatchNorm1d/2d, one layer: each kernel of the own
    BN (bnbench/nn/batchnorm.py: fast, the default; reference, Alg. 1 line by line; compiled, in
    training only, compiled before the timing, dynamic shapes; cpp, the C++ kernels, built before
    the timing) side by side with torch's. bf16:
    the input is bf16, the parameters and statistics float32, as under autocast. Small timing
    blocks (~0.1-1 ms): on a loaded machine a long block is preempted more often than a short one,
    which skews the ratios against the slower candidate."""
    shape, channels_last = case
    layout = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype).contiguous(memory_format=layout).requires_grad_(mode != "infer")
    grad = torch.randn(shape, dtype=dtype).contiguous(memory_format=layout)
    kernels = ("fast", "reference", "compiled", "cpp") if mode == "train" else ("fast", "reference", "cpp")
    layers = {k: BatchNorm(shape[1], kernel=k) for k in kernels}
    layers["torch"] = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(shape[1])
    for layer in layers.values():
        layer.train(mode == "train")

    def step(layer):
        if mode == "infer":
            with torch.no_grad():
                layer(x)
        else:
            layer(x).backward(grad)

    for layer in layers.values():  # warm-up; for "compiled" also its compilation
        step(layer), step(layer)
    inner = 10 if len(shape) == 2 else 2
    medians = side_by_side({k: (lambda layer=layer: step(layer)) for k, layer in layers.items()}, rounds=150,
                           inner=inner)
    what = "forward (no grad)" if mode == "infer" else "forward+backward"
    report_against(benchmark, f"BN {mode} {what} {tuple(shape)}{' NHWC' * channels_last} {str(dtype)[6:]}", medians)
    benchmark.pedantic(step, args=(layers["fast"],), rounds=20, iterations=inner)


@pytest.mark.parametrize("model_name", ["mlp", "inception_mini"])
def test_own_bn_in_a_training_step(benchmark, model_name):
    """The own BN inside a model: a plain PyTorch training step (forward, loss, backward, SGD with
    momentum) of the paper's MLP (batch 60) and of inception_mini (batch 32, NHWC as CPU runs use)
    with torch's BN, the own BN's `fast` kernel and its `cpp` kernel, side by side."""
    def norm(kind, dims):
        if kind == "torch":
            return lambda c, affine: (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(c)
        return lambda c, affine: BatchNorm(c, kernel=kind)

    def make_step(kind):
        torch.manual_seed(0)
        if model_name == "mlp":
            model, x, n = MLP((1, 28, 28), 10, norm_layer=norm(kind, 1)), torch.randn(60, 1, 28, 28), 60
        else:
            model = InceptionMini((1, 28, 28), 10, norm_layer=norm(kind, 2)).to(memory_format=torch.channels_last)
            x, n = torch.randn(32, 1, 28, 28), 32
        y = torch.randint(0, 10, (n,))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            F.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
        return step

    steps = {kind: make_step(kind) for kind in ("torch", "fast", "cpp")}
    for step in steps.values():  # warm-up (and the cpp kernel's build, if not cached)
        for _ in range(3):
            step()
    inner = 20 if model_name == "mlp" else 2
    medians = side_by_side(steps, rounds=40, inner=inner)
    report_against(benchmark, f"training step of {model_name} with each BN", medians, unit="ms", scale=1e3)
    benchmark.pedantic(steps["cpp"], rounds=10, iterations=inner)


@pytest.mark.parametrize("dtype", BN_DTYPES.values(), ids=BN_DTYPES.keys())
@pytest.mark.parametrize("shape", BN_SHAPES.values(), ids=BN_SHAPES.keys())
def test_bn_compiled_kernel_compile_time(benchmark, shape, dtype):
    """What BatchNorm(kernel="compiled") costs before it runs: its first training step (forward and
    backward graphs compiled, with dynamic shapes), then steps with two other batch sizes (no
    recompilation expected). In a fresh dynamo state; Inductor's on-disk cache
    (TORCHINDUCTOR_CACHE_DIR) may still hold kernels from an earlier run: delete it for a cold figure."""
    import time

    import torch._dynamo

    from bnbench.nn import batchnorm

    torch._dynamo.reset()
    batchnorm._COMPILED.clear()
    layer = BatchNorm(shape[1], kernel="compiled")
    seconds = []
    for n in (shape[0], shape[0] // 2, shape[0] // 4):
        x = torch.randn((n, *shape[1:]), dtype=dtype, requires_grad=True)
        t = time.perf_counter()
        layer(x).backward(torch.randn_like(x))
        seconds.append(time.perf_counter() - t)
    benchmark.extra_info.update({"first_step_s": seconds[0], "new_batch_size_s": seconds[1],
                                 "third_batch_size_s": seconds[2]})
    print(f"\n[bench] BN kernel=compiled {tuple(shape)} {str(dtype)[6:]}: first step {seconds[0]:.1f} s, "
          f"another batch size {seconds[1]:.2f} s, a third {seconds[2]:.2f} s")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


# inception_mini's two LRN layers (after the stem's pooling and its 3x3 convolution), NHWC as
# run.channels_last=auto lays them out on CPU
LRN_SHAPES = {"stem_32x32x7x7": (32, 32, 7, 7), "stem_32x64x7x7": (32, 64, 7, 7)}


@pytest.mark.parametrize("shape", LRN_SHAPES.values(), ids=LRN_SHAPES.keys())
def test_lrn_layer(benchmark, shape):
    """bnbench's LocalResponseNorm (bnbench/nn/lrn.py: the window sums as one matrix product, the
    backward written out) against torch.nn.LocalResponseNorm, GoogLeNet's parameters, float32,
    forward + backward, side by side."""
    from bnbench.nn.lrn import LocalResponseNorm

    torch.manual_seed(0)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    layers = {"bnbench": LocalResponseNorm(5, 1e-4, 0.75, 1.0), "torch": nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)}
    for layer in layers.values():
        layer(x).backward(grad)
    medians = side_by_side({k: (lambda layer=layer: layer(x).backward(grad)) for k, layer in layers.items()},
                           rounds=100, inner=2)
    report_against(benchmark, f"LRN forward+backward {tuple(shape)} float32 NHWC", medians)
    benchmark.pedantic(lambda: layers["bnbench"](x).backward(grad), rounds=20, iterations=2)


# The two models of the paper's studies, as their recipes train them (batch, rate), with BN:
# name -> (model builder, batch size, steps timed per round)
MODELS = {
    "paper_mlp": (lambda: MLP((1, 28, 28), 10, create_norm("batch")), 60, 2000),  # Sec. 4.1
    "inception_mini": (lambda: InceptionMini((1, 28, 28), 10, create_norm("batch"), dropout=0.4, lrn=True), 32,
                       100),  # Sec. 4.2's BN-Baseline on 28x28
}


def step_parts(model_name: str, steps: int):
    build, batch, _ = MODELS[model_name]
    torch.manual_seed(0)
    images, labels = torch.rand(6000, 1, 28, 28), torch.randint(0, 10, (6000,))
    recipe = Recipe(batch_size=batch, steps=steps, lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.0,
                    decay_gamma=1.0, decay_every=1000.0, dropout=0.0, lrn=False, shuffle="global",
                    brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    loader = DataLoader(BatchStream(images, labels, batch, "global", 1, 0), batch_size=None)
    return recipe, build(), loader


def recipe_optimizer(model: nn.Module, recipe: Recipe):
    """The recipe's SGD on its parameter groups (weights with L2; BN's gamma/beta and biases
    without) and its schedule, as the Classifier configures them (the benchmark recipe has no momentum)."""
    opt = torch.optim.SGD(parameter_groups(model, recipe.weight_decay), lr=recipe.lr)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: recipe.decay_gamma ** (step / recipe.decay_every))


def bench_trainer(steps: int) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                      log_every_n_steps=100, accelerator="cpu", devices=1)


def run_bnbench(steps: int, model_name: str = "paper_mlp", channels_last: bool = False, group: int = 1) -> None:
    """`group` > 1: that many optimizer steps per Lightning batch (run.steps_per_batch; auto gives
    50 for the paper's recipes), as bnbench/train.py sets them up."""
    recipe, model, loader = step_parts(model_name, steps)
    trainer = bench_trainer(steps)
    if group > 1:
        loader = DataLoader(Groups(loader.dataset, group), batch_size=None)
    trainer.fit(Classifier(model, recipe, 10, channels_last=channels_last, steps_per_batch=group),
                train_dataloaders=loader)


class MinimalModule(pl.LightningModule):
    """The least a LightningModule can be for the same work: the loss, the recipe's optimizer
    and schedule. What Lightning's own loop costs, with nothing of bnbench's in it."""

    def __init__(self, model: nn.Module, recipe: Recipe):
        super().__init__()
        self.model, self.recipe = model, recipe

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        opt, schedule = recipe_optimizer(self.model, self.recipe)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def run_lightning_minimal(steps: int, model_name: str = "paper_mlp") -> None:
    recipe, model, loader = step_parts(model_name, steps)
    bench_trainer(steps).fit(MinimalModule(model, recipe), train_dataloaders=loader)


def run_bare(steps: int, model_name: str = "paper_mlp") -> None:
    """The same work by hand: the recipe's SGD on the same parameter groups (weights with L2,
    BN's gamma/beta and biases without) and its learning-rate schedule stepped every step."""
    recipe, model, loader = step_parts(model_name, steps)
    opt, schedule = recipe_optimizer(model, recipe)
    done = 0
    while done < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            done += 1
            if done == steps:
                break


@pytest.mark.parametrize("model_name", list(MODELS))
def test_training_step_against_a_bare_loop(benchmark, model_name):
    """A bnbench training step (Lightning, the Classifier, in-memory batches) against a bare
    PyTorch loop doing the same work, with BN (roadmap: the MLP within 1.10x, inception_mini
    within 1.03x). Trainer set-up included. Beside them, the same work through a minimal
    LightningModule, one optimizer step per batch: the floor any such module stands on; and bnbench
    with one step per batch (`run.steps_per_batch=1`). Their ratios to bare are printed too."""
    import logging
    import warnings

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    steps = MODELS[model_name][2]
    medians = side_by_side({"bnbench": lambda: run_bnbench(steps, model_name, group=50),
                            "bare": lambda: run_bare(steps, model_name),
                            "bnbench_1_per_batch": lambda: run_bnbench(steps, model_name),
                            "lightning_minimal": lambda: run_lightning_minimal(steps, model_name)}, rounds=5)
    report_against(benchmark, f"{steps} training steps, {model_name} + BN (bnbench: 50 steps per Lightning batch)",
                   medians, reference="bare", unit="ms", scale=1e3)
    benchmark.extra_info.update({f"steps_per_s_{k}": steps / v for k, v in medians.items()})
    print("[bench] steps/s: " + ", ".join(f"{k} {steps / v:.0f}" for k, v in medians.items()))
    benchmark.pedantic(run_bnbench, args=(steps, model_name), kwargs={"group": 50}, rounds=1, iterations=1)


def test_inception_mini_channels_last_on_cpu(benchmark):
    """`run.channels_last` (null = auto: on for convolutional models on CPU, bnbench/train.py):
    the same bnbench training steps of inception_mini + BN with NHWC model and batches against
    NCHW, side by side."""
    import logging
    import warnings

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    steps = MODELS["inception_mini"][2]
    medians = side_by_side({"channels_last": lambda: run_bnbench(steps, "inception_mini", True),
                            "contiguous": lambda: run_bnbench(steps, "inception_mini", False)}, rounds=3)
    report(benchmark, f"{steps} training steps, inception_mini + BN, NHWC against NCHW", medians, unit="ms",
           scale=1e3)
    benchmark.pedantic(run_bnbench, args=(steps, "inception_mini", True), rounds=1, iterations=1)
