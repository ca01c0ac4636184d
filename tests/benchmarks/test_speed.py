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

from bnbench.data.in_memory import BatchStream
from bnbench.models.mlp import MLP
from bnbench.nn.batchnorm import BatchNorm
from bnbench.nn.norm import create_norm
from bnbench.recipe import Recipe
from bnbench.system import Classifier
from timing import report, side_by_side


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("shape", [(60, 100), (32, 64, 7, 7)], ids=["mlp_60x100", "conv_32x64x7x7"])
def test_bn_layer_forward_backward(benchmark, shape):
    """bnbench's own BatchNorm (Alg. 1 written out) against torch's fused kernel, training mode."""
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=True)
    grad = torch.randn(shape)
    ours = BatchNorm(shape[1])
    theirs = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(shape[1])

    def step(layer):
        layer(x).backward(grad)

    medians = side_by_side({"bnbench": lambda: step(ours), "torch": lambda: step(theirs)}, rounds=40, inner=50)
    report(benchmark, f"BN forward+backward {shape}", medians)
    benchmark(step, ours)


def paper_mlp_parts(steps: int):
    torch.manual_seed(0)
    images, labels = torch.rand(6000, 1, 28, 28), torch.randint(0, 10, (6000,))
    recipe = Recipe(batch_size=60, steps=steps, lr=0.5, momentum=0.0, nesterov=False, weight_decay=0.0,
                    decay_gamma=1.0, decay_every=1000.0, dropout=0.0, lrn=False, shuffle="global",
                    brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    model = MLP((1, 28, 28), 10, create_norm("batch"))
    loader = DataLoader(BatchStream(images, labels, 60, "global", 1, 0), batch_size=None)
    return recipe, model, loader


def run_bnbench(steps: int) -> None:
    recipe, model, loader = paper_mlp_parts(steps)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         log_every_n_steps=100, accelerator="cpu", devices=1)
    trainer.fit(Classifier(model, recipe, 10), train_dataloaders=loader)


def run_bare(steps: int) -> None:
    recipe, model, loader = paper_mlp_parts(steps)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr)
    done = 0
    while done < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break


def test_training_step_against_a_bare_loop(benchmark):
    """A bnbench training step (Lightning, the Classifier, in-memory batches) against a bare
    PyTorch loop on the paper's MLP with BN, batch 60 (Sec. 4.1). Trainer set-up included."""
    import logging
    import warnings

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    steps = 2000
    medians = side_by_side({"bnbench": lambda: run_bnbench(steps), "bare": lambda: run_bare(steps)}, rounds=3)
    report(benchmark, f"{steps} training steps, paper MLP + BN", medians, unit="ms", scale=1e3)
    benchmark.extra_info.update({f"steps_per_s_{k}": steps / v for k, v in medians.items()})
    print(f"[bench] steps/s: bnbench {steps / medians['bnbench']:.0f}, bare {steps / medians['bare']:.0f}")
    benchmark.pedantic(run_bnbench, args=(steps,), rounds=1, iterations=1)
