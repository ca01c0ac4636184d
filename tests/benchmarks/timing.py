"""Side-by-side timing for the benchmarks: candidates interleaved round by round, medians compared."""

from __future__ import annotations

import gc
import statistics
import time
from pathlib import Path

import pytest
import torch


def side_by_side(fns: dict, rounds: int, inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, interleaved round by round."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t) / inner)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(benchmark, title: str, medians: dict[str, float], unit: str = "us", scale: float = 1e6) -> None:
    names = list(medians)
    ratio = medians[names[0]] / medians[names[1]]
    benchmark.extra_info.update({f"median_{k}_s": v for k, v in medians.items()})
    benchmark.extra_info[f"ratio_{names[0]}_over_{names[1]}"] = ratio
    parts = ", ".join(f"{k} {v * scale:.1f} {unit}" for k, v in medians.items())
    print(f"\n[bench] {title}: {parts}; {names[0]}/{names[1]} = {ratio:.3f}")


def report_against(benchmark, title: str, medians: dict[str, float], reference: str = "torch", unit: str = "us",
                   scale: float = 1e6) -> None:
    """Like `report`, with every candidate's ratio to `reference`."""
    ratios = {k: v / medians[reference] for k, v in medians.items() if k != reference}
    benchmark.extra_info.update({f"median_{k}_s": v for k, v in medians.items()})
    benchmark.extra_info.update({f"ratio_{k}_over_{reference}": r for k, r in ratios.items()})
    parts = ", ".join(f"{k} {v * scale:.1f} {unit}" for k, v in medians.items())
    print(f"\n[bench] {title}: {parts}; " + ", ".join(f"{k}/{reference} = {r:.3f}" for k, r in ratios.items()))


@pytest.fixture
def one_thread():
    """One torch thread, as in a study job on CPU (`run.threads=1`) and a DataLoader worker
    (torch sets 1 there): the CPU benchmarks that use it measure a single core. (Here, not in a
    conftest.py: a second conftest module would shadow tests/conftest.py's helpers.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- Training steps through the harness (bnbench.train.build + a Lightning Trainer) -----------


def gpu_overrides(data: list[str], results: Path, accelerator: str = "gpu", precision: str = "bf16-mixed",
                  batch: int = 128) -> list[str]:
    """BN-Inception as the GPU benchmarks run it: NHWC, no logger, no checkpoints."""
    return [*data, "model=bn_inception", "norm=batch", "logger=none", f"paths.results={results}",
            "run.checkpoint.every_s=null", f"recipe.batch_size={batch}", f"trainer.accelerator={accelerator}",
            f"trainer.precision={precision}", "run.channels_last=true"]


def device_sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def step_clock(warmup: int, measured: int):
    """A Lightning callback timing steps warmup+1 .. warmup+measured, the device synchronized at both ends."""
    import pytorch_lightning as pl

    class StepClock(pl.Callback):
        def __init__(self):
            self.calls, self.t0, self.seconds = 0, None, None

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.calls += 1
            if self.calls == warmup:
                device_sync()
                self.t0 = time.perf_counter()
            elif self.calls == warmup + measured:
                device_sync()
                self.seconds = time.perf_counter() - self.t0

    return StepClock()


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def seconds_per_step(overrides: list[str], warmup: int, measured: int, pinned: bool = False) -> float:
    """Steady-state seconds per training step of the run these overrides describe: the model,
    data module and Classifier as `bnbench train` builds them (bnbench.train.build), the
    Trainer from the run's trainer config, no validation, no logger. `pinned`: the train
    loader with pin_memory=True (the data module's is False), to show what that would buy."""
    from conftest import compose
    from hydra.utils import instantiate

    from bnbench.train import build, quiet_lightning

    quiet_lightning()
    cfg = compose([*overrides, f"trainer.max_steps={warmup + measured}"])
    parts = build(cfg)
    if pinned:
        make = parts.datamodule.train_dataloader

        def pinned_loader():
            loader = make()
            loader.pin_memory = True
            return loader

        parts.datamodule.train_dataloader = pinned_loader
    clock = step_clock(warmup, measured)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[clock], enable_progress_bar=False,
                          enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(parts.system, datamodule=parts.datamodule)
    assert trainer.global_step == warmup + measured and clock.seconds is not None
    assert trainer.train_dataloader.pin_memory == pinned
    seconds = clock.seconds / measured
    del trainer, parts, clock
    release_memory()
    return seconds


def bare_seconds_per_step(overrides: list[str], warmup: int, measured: int) -> float:
    """`seconds_per_step`'s run, by hand (below)."""
    seconds = _bare_seconds_per_step(overrides, warmup, measured)
    release_memory()  # the model and batch are gone with the call's frame
    return seconds


def _bare_seconds_per_step(overrides: list[str], warmup: int, measured: int) -> float:
    """The same training steps by hand, without Lightning: the model, optimizer and schedule
    that bnbench.train.build makes for these overrides (the recipe's parameter groups, momentum,
    schedule stepped every step), one batch made on the device once (data=synthetic repeats one
    batch too), NHWC if the run is, autocast as trainer.precision asks. Timed like
    `seconds_per_step`: the device synchronized only at both ends."""
    import torch.nn.functional as F
    from conftest import compose

    from bnbench.train import build

    cfg = compose([*overrides, f"trainer.max_steps={warmup + measured}"])
    parts = build(cfg)
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    layout = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    model = parts.system.model.to(device).to(memory_format=layout)
    chosen = parts.system.configure_optimizers()
    optimizer, schedule = chosen["optimizer"], chosen["lr_scheduler"]["scheduler"]
    data = parts.datamodule
    x = torch.rand((parts.recipe.batch_size, *data.in_shape), device=device).to(memory_format=layout)
    y = torch.randint(0, data.num_classes, (parts.recipe.batch_size,), device=device)
    precision = str(cfg.trainer.precision)
    if precision not in ("32", "32-true", "bf16-mixed"):
        raise ValueError(f"bare_seconds_per_step: trainer.precision={precision} is not timed")
    bf16 = precision == "bf16-mixed"
    model.train()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()

    for _ in range(warmup):
        step()
    device_sync()
    t = time.perf_counter()
    for _ in range(measured):
        step()
    device_sync()
    return (time.perf_counter() - t) / measured
