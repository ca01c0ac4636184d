"""`norm.stats`: BN statistics over each process's batch (device), the global batch (global) or
ghost batches (ghost), and `average_running_stats` -- checked against one process, in float64.

The multi-process cases run for real: torch.distributed with gloo in 2 processes started by
torch.multiprocessing (spawn). ONE spawn, in a module-scoped fixture, runs every scenario (two
Python start-ups with torch are the cost); each rank torch.saves its results and the tests
compare them with references computed here in the test process.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from bnbench.errors import ConfigError
from bnbench.nn.batchnorm import STATS, BatchNorm
from bnbench.nn.norm import create_norm
from bnbench.nn.population import estimate_population_statistics
from bnbench.nn.sync import average_running_stats

C = 3
MOMENTUM = 0.3
EPS = 1e-5
EXACT = dict(rtol=0, atol=1e-10)  # max abs error, float64
WORLD = 2
# Global batches: (N, C) and (N, C, H, W). One feature sits at 1e4 with unit spread: there
# E[x^2] - E[x]^2 (all-reducing sums and sums of squares) would lose ~8 digits, Chan's formula none.
SHAPES = {"NC": (8, C), "NCHW": (6, C, 3, 4)}
ITERS = 3


def uneven(n: int) -> list[list[int]]:
    """Per-iteration split of the global batch over the 2 ranks; the last one unequal (counts differ)."""
    return [[n // 2, n - n // 2]] * (ITERS - 1) + [[n // 2 - 1, n - n // 2 + 1]]


def even(n: int) -> list[list[int]]:
    return [[n // 2, n - n // 2]] * ITERS


def make_batches(shape, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """ITERS pairs (x, w): the global batch and the fixed weights of the loss sum(y * w)."""
    g = torch.Generator().manual_seed(seed)
    view = (1, C) + (1,) * (len(shape) - 2)
    offset = torch.tensor([0.0, -3.0, 1e4], dtype=torch.float64).view(view)
    scale = torch.tensor([1.0, 5.0, 1.0], dtype=torch.float64).view(view)
    return [(torch.randn(shape, generator=g, dtype=torch.float64) * scale + offset + k,
             torch.randn(shape, generator=g, dtype=torch.float64)) for k in range(ITERS)]


def make_bn(stats: str = "device", ghost_size=None, process_group=None, kernel: str = "fast") -> BatchNorm:
    """An own BN layer in float64 with non-trivial gamma and beta (the same in every process)."""
    bn = BatchNorm(C, eps=EPS, momentum=MOMENTUM, stats=stats, ghost_size=ghost_size,
                   process_group=process_group, kernel=kernel).double()
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(C, generator=g, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64))
    return bn


def run_iterations(bn: BatchNorm, batches, splits, rank: int = 0) -> list[dict[str, torch.Tensor]]:
    """Forward/backward on this rank's slice of each global batch; what each step produced."""
    records = []
    for (x_full, w_full), split in zip(batches, splits):
        x = x_full.split(split)[rank].clone().requires_grad_()
        w = w_full.split(split)[rank]
        bn.zero_grad(set_to_none=True)
        y = bn(x)
        (y * w).sum().backward()
        records.append(dict(y=y.detach(), dx=x.grad, dgamma=bn.weight.grad.clone(), dbeta=bn.bias.grad.clone(),
                            running_mean=bn.running_mean.clone(), running_var=bn.running_var.clone()))
    return records


def scenario_inputs() -> dict:
    return {name: dict(batches=make_batches(shape, seed=i), uneven=uneven(shape[0]), even=even(shape[0]))
            for i, (name, shape) in enumerate(SHAPES.items())}


def running_stats_model() -> nn.ModuleList:
    """Own BN and torch's, in two dtypes (two all_reduce buckets), and one torch BN without statistics."""
    return nn.ModuleList([BatchNorm(C).double(), nn.BatchNorm2d(C).float(), nn.BatchNorm1d(C).double(),
                          nn.BatchNorm1d(C, track_running_stats=False)])


def buffers(model: nn.ModuleList) -> list[torch.Tensor]:
    return [b.clone() for m in model if m.running_mean is not None for b in (m.running_mean, m.running_var)]


def _worker(rank: int, port: int, folder: str) -> None:
    """One of the 2 gloo processes: runs every scenario and saves its results."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        inputs = torch.load(Path(folder) / "inputs.pt")
        out = {}
        for name, case in inputs.items():
            out[f"global/{name}"] = run_iterations(make_bn("global"), case["batches"], case["uneven"], rank)
            out[f"global/{name}/reference"] = run_iterations(make_bn("global", kernel="reference"), case["batches"],
                                                             case["uneven"], rank)
            out[f"device/{name}"] = run_iterations(make_bn("device"), case["batches"], case["even"], rank)
        group = dist.new_group(list(range(WORLD)))
        out["global_group/NC"] = run_iterations(make_bn("global", process_group=group), inputs["NC"]["batches"],
                                                inputs["NC"]["uneven"], rank)

        # average_running_stats: every rank's layers see different data.
        torch.manual_seed(rank)
        model = running_stats_model().train()
        for _ in range(2):
            model[0](torch.randn(5, C, dtype=torch.float64) * (rank + 1) + rank)
            model[1](torch.randn(5, C, 2, 2) * (rank + 2) - rank)
            model[2](torch.randn(5, C, dtype=torch.float64) + 3 * rank)
            model[3](torch.randn(5, C))
        out["avg/before"] = buffers(model)
        out["avg/layers"] = average_running_stats(model)
        out["avg/after"] = buffers(model)
        torch.save(out, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def inputs() -> dict:
    return scenario_inputs()


@pytest.fixture(scope="module")
def ranks(inputs, tmp_path_factory) -> list[dict]:
    """Both ranks' results of every multi-process scenario (one spawn of 2 gloo processes)."""
    folder = tmp_path_factory.mktemp("bn_stats")
    torch.save(inputs, folder / "inputs.pt")
    mp.start_processes(_worker, args=(free_port(), str(folder)), nprocs=WORLD, start_method="spawn")
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)]


def check_rank_slices(ranks, key, reference, splits):
    """Each rank's y and dx are its slice of the one-process result on the concatenated batch."""
    for it, ref in enumerate(reference):
        for r in range(WORLD):
            got = ranks[r][key][it]
            assert_close(got["y"], ref["y"].split(splits[it])[r], **EXACT)
            assert_close(got["dx"], ref["dx"].split(splits[it])[r], **EXACT)


# --------------------------------------------------------------------------- global


@pytest.mark.parametrize("key", ["global/NC", "global/NCHW", "global_group/NC", "global/NC/reference",
                                 "global/NCHW/reference"])
def test_global_two_processes_equal_one_process_on_the_whole_batch(ranks, inputs, key):
    case = inputs[key.split("/")[1]]
    n = len(case["batches"][0][0])
    kernel = "reference" if key.endswith("/reference") else "fast"  # the same rounding as the ranks'
    reference = run_iterations(make_bn("device", kernel=kernel), case["batches"], [[n]] * ITERS)
    check_rank_slices(ranks, key, reference, case["uneven"])
    for it, ref in enumerate(reference):
        # gamma/beta: each rank returns its own contribution (DDP then averages them); their SUM
        # over ranks is the one-process gradient of the summed loss.
        for p in ("dgamma", "dbeta"):
            assert_close(sum(ranks[r][key][it][p] for r in range(WORLD)), ref[p], **EXACT)
        # Running statistics: from the global mean and unbiased variance, bitwise equal on every rank.
        for s in ("running_mean", "running_var"):
            assert_close(ranks[0][key][it][s], ref[s], **EXACT)
            assert torch.equal(ranks[0][key][it][s], ranks[1][key][it][s])
    # The statistics moved (with momentum 0.3 over 3 steps), so the comparison could have failed.
    assert ref["running_mean"][2] > 1e3


def test_global_in_one_process_is_device(inputs):
    case = inputs["NCHW"]
    n = len(case["batches"][0][0])
    assert not dist.is_initialized()
    for a, b in zip(run_iterations(make_bn("global"), case["batches"], [[n]] * ITERS),
                    run_iterations(make_bn("device"), case["batches"], [[n]] * ITERS)):
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_global_with_world_size_one_is_device(inputs, tmp_path):
    case = inputs["NC"]
    n = len(case["batches"][0][0])
    reference = run_iterations(make_bn("device"), case["batches"], [[n]] * ITERS)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        got = run_iterations(make_bn("global"), case["batches"], [[n]] * ITERS)
        assert average_running_stats(running_stats_model()) == 0
    finally:
        dist.destroy_process_group()
    for a, b in zip(got, reference):
        for k in a:
            assert torch.equal(a[k], b[k]), k


# --------------------------------------------------------------------------- ghost


@pytest.mark.parametrize("kernel", ["fast", "reference"])
@pytest.mark.parametrize("name", SHAPES)
def test_ghost_in_one_process_equals_device_in_two(ranks, inputs, name, kernel):
    """ghost_size = b/2 on the whole batch b is what two DDP ranks with b/2 each compute."""
    case = inputs[name]
    n = len(case["batches"][0][0])
    ghost = run_iterations(make_bn("ghost", ghost_size=n // 2, kernel=kernel), case["batches"], [[n]] * ITERS)
    key = f"device/{name}"
    check_rank_slices(ranks, key, ghost, case["even"])
    for it, ref in enumerate(ghost):
        # gamma/beta: ghost sums over its ghost batches, i.e. the SUM over ranks of device's
        # per-rank gradients (DDP would report their mean, half of it).
        for p in ("dgamma", "dbeta"):
            assert_close(sum(ranks[r][key][it][p] for r in range(WORLD)), ref[p], **EXACT)
        # Running statistics (the documented choice): the average over ghost batches = the
        # average over ranks of device's per-rank estimates (what average_running_stats gives).
        for s in ("running_mean", "running_var"):
            assert_close(sum(ranks[r][key][it][s] for r in range(WORLD)) / WORLD, ref[s], **EXACT)
    assert not torch.allclose(ranks[0][key][-1]["running_mean"], ranks[1][key][-1]["running_mean"])


@pytest.mark.parametrize("kernel", ["fast", "reference"])
@pytest.mark.parametrize("shape,ghost_size", [((12, C), 4), ((12, C), 12), ((6, C, 3, 4), 2), ((6, C, 3, 4), 3)])
def test_ghost_matches_functional_batch_norm_per_chunk(shape, ghost_size, kernel):
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    bn = make_bn("ghost", ghost_size=ghost_size, kernel=kernel)
    (bn(x) * w).sum().backward()
    y = bn(x.detach())  # the same forward again, for the output

    x_ref = x.detach().clone().requires_grad_()
    gamma = bn.weight.detach().clone().requires_grad_()
    beta = bn.bias.detach().clone().requires_grad_()
    y_ref = torch.cat([F.batch_norm(chunk, None, None, gamma, beta, training=True, eps=EPS)
                       for chunk in x_ref.split(ghost_size)])
    (y_ref * w).sum().backward()
    assert_close(y, y_ref, **EXACT)
    assert_close(x.grad, x_ref.grad, **EXACT)
    assert_close(bn.weight.grad, gamma.grad, **EXACT)
    assert_close(bn.bias.grad, beta.grad, **EXACT)


def ghost_statistics(x: torch.Tensor, ghost_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per ghost batch: mean and unbiased variance over its examples and positions, as (N/g, C)."""
    per = x.unflatten(0, (-1, ghost_size)).transpose(1, 2).flatten(2)  # (N/g, C, g * positions)
    return per.mean(2), per.var(2, unbiased=True)


@pytest.mark.parametrize("kernel", ["fast", "reference"])
@pytest.mark.parametrize("shape,ghost_size", [((12, C), 3), ((6, C, 3, 4), 2)])
def test_ghost_running_statistics_average_the_ghost_batches(shape, ghost_size, kernel):
    """running <- (1 - momentum) running + momentum * mean over ghost batches of (mu_B, m/(m-1) var_B)."""
    g = torch.Generator().manual_seed(6)
    bn = make_bn("ghost", ghost_size=ghost_size, kernel=kernel)
    mean, var = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    for k in range(3):
        x = torch.randn(shape, generator=g, dtype=torch.float64) * (k + 1) + k
        bn(x)
        mu_b, var_b = ghost_statistics(x, ghost_size)
        mean = (1 - MOMENTUM) * mean + MOMENTUM * mu_b.mean(0)
        var = (1 - MOMENTUM) * var + MOMENTUM * var_b.mean(0)
    assert_close(bn.running_mean, mean, **EXACT)
    assert_close(bn.running_var, var, **EXACT)
    assert bn.num_batches_tracked.item() == 3


def test_ghost_population_statistics_are_alg2_over_ghost_batches():
    """momentum=None (the population pass): Alg. 2 with the ghost batches as its mini-batches."""
    g = torch.Generator().manual_seed(7)
    batches = [torch.randn(8, C, generator=g, dtype=torch.float64) * (k + 1) for k in range(3)]
    bn = make_bn("ghost", ghost_size=4)
    assert estimate_population_statistics(nn.Sequential(bn), batches, num_batches=3) == 3
    stats = [ghost_statistics(x, 4) for x in batches]
    assert_close(bn.running_mean, torch.cat([s[0] for s in stats]).mean(0), **EXACT)
    assert_close(bn.running_var, torch.cat([s[1] for s in stats]).mean(0), **EXACT)


def test_ghost_batch_not_a_multiple_raises_naming_both_numbers():
    bn = make_bn("ghost", ghost_size=4)
    with pytest.raises(ValueError, match=r"10 examples.*ghost_size=4"):
        bn(torch.randn(10, C, dtype=torch.float64))
    assert bn.num_batches_tracked.item() == 0  # nothing was updated


def test_ghost_eval_is_the_fixed_affine_map():
    bn = make_bn("ghost", ghost_size=4)
    bn(torch.randn(8, C, dtype=torch.float64) * 3 + 1)
    bn.eval()
    x = torch.randn(5, C, dtype=torch.float64)  # any batch size at inference
    ref = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=EPS)
    assert_close(bn(x), ref, **EXACT)


@pytest.mark.parametrize("kwargs,match", [
    (dict(stats="ghost"), "ghost_size"),
    (dict(stats="ghost", ghost_size=1), "ghost_size"),
    (dict(stats="ghost", ghost_size=2.0), "ghost_size"),
    (dict(stats="device", ghost_size=4), "ghost_size"),
    (dict(stats="sync"), "stats"),
    (dict(stats="device", process_group=object()), "process_group"),
])
def test_batchnorm_rejects_bad_modes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchNorm(C, **kwargs)


# --------------------------------------------------------------------------- average_running_stats


def test_average_running_stats_is_the_mean_over_ranks(ranks):
    assert ranks[0]["avg/layers"] == ranks[1]["avg/layers"] == 3  # the layer without statistics is skipped
    before = [ranks[r]["avg/before"] for r in range(WORLD)]
    assert not torch.allclose(before[0][0], before[1][0])  # the ranks did differ
    for i, (after0, after1) in enumerate(zip(ranks[0]["avg/after"], ranks[1]["avg/after"])):
        assert torch.equal(after0, after1)
        assert after0.dtype == before[0][i].dtype
        assert_close(after0, (before[0][i] + before[1][i]) / 2, rtol=0, atol=1e-6 if after0.dtype == torch.float32 else 1e-12)


def test_average_running_stats_without_distributed_is_a_no_op():
    model = running_stats_model()
    before = buffers(model)
    assert average_running_stats(model) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, buffers(model)))


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("kwargs,names", [
    (dict(impl="bnbench", stats="sync"), ["norm.stats"]),
    (dict(impl="bnbench", stats="ghost"), ["norm.ghost_size", "norm.stats=ghost"]),
    (dict(impl="bnbench", stats="ghost", ghost_size=1), ["norm.ghost_size"]),
    (dict(impl="bnbench", stats="ghost", ghost_size=0), ["norm.ghost_size"]),
    (dict(impl="bnbench", stats="ghost", ghost_size=True), ["norm.ghost_size"]),
    (dict(impl="bnbench", stats="ghost", ghost_size=2.5), ["norm.ghost_size"]),
    (dict(impl="bnbench", stats="device", ghost_size=4), ["norm.ghost_size", "norm.stats=device"]),
    (dict(impl="bnbench", stats="global", ghost_size=4), ["norm.ghost_size", "norm.stats=global"]),
    (dict(impl="torch", stats="global"), ["norm.stats=global", "norm.impl=bnbench"]),
    (dict(impl="torch", stats="ghost", ghost_size=4), ["norm.stats=ghost", "norm.impl=bnbench"]),
])
def test_create_norm_bad_stats_names_key(kwargs, names):
    with pytest.raises(ConfigError) as e:
        create_norm("batch", **kwargs)
    message = str(e.value)
    assert "\n" not in message
    for name in names:
        assert name in message


@pytest.mark.parametrize("stats,ghost_size", [("device", None), ("global", None), ("ghost", 4)])
def test_create_norm_bnbench_stats(stats, ghost_size):
    layer = create_norm("batch", impl="bnbench", stats=stats, ghost_size=ghost_size)(7, True)
    assert type(layer) is BatchNorm and (layer.stats, layer.ghost_size) == (stats, ghost_size)


def test_create_norm_stats_defaults():
    assert STATS == ("device", "global", "ghost")
    assert type(create_norm("batch", impl="torch", stats="device")(7, False)) is nn.BatchNorm1d
    assert create_norm("none", stats="global") is None  # no statistics to choose, like impl


def test_compose_defaults_are_device():
    from conftest import compose  # here, not at the top: the spawned workers import this module

    for norm in ("none", "batch"):
        cfg = compose([f"norm={norm}"])
        assert (cfg.norm.stats, cfg.norm.ghost_size) == ("device", None)


BAD_STATS_OVERRIDES = [
    (["norm.stats=global"], ["norm.stats=global", "norm.impl=bnbench"]),
    (["norm.impl=bnbench", "norm.stats=ghost"], ["norm.ghost_size"]),
    (["norm.impl=bnbench", "norm.ghost_size=4"], ["norm.ghost_size", "norm.stats=device"]),
]


@pytest.mark.parametrize("overrides,names", BAD_STATS_OVERRIDES)
def test_composed_norm_config_rejects_bad_stats(overrides, names):
    """create_norm(**cfg.norm), as bnbench.train.build calls it."""
    from conftest import compose

    with pytest.raises(ConfigError) as e:
        create_norm(**compose(["norm=batch", *overrides]).norm)
    for name in names:
        assert name in str(e.value)


@pytest.mark.parametrize("overrides,names", BAD_STATS_OVERRIDES)
def test_build_rejects_bad_stats(overrides, names, tiny_data):
    from conftest import compose

    from bnbench.train import build

    with pytest.raises(ConfigError) as e:
        build(compose(["norm=batch", f"data.root={tiny_data}", *overrides]))
    for name in names:
        assert name in str(e.value)


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_compose_rejects_an_unknown_stats_mode(norm):
    from hydra.errors import HydraException

    from conftest import compose

    with pytest.raises(HydraException, match="norm.stats=sync"):  # the schema's Enum (bnbench.schema.NormStats)
        compose([f"norm={norm}", "norm.impl=bnbench", "norm.stats=sync"])


def test_create_norm_rejects_unknown_names_also_without_bn():
    for kwargs in ({"stats": "sync"}, {"impl": "foo"}, {"inference": "median"}):
        with pytest.raises(ConfigError, match=f"norm.{next(iter(kwargs))}"):
            create_norm("none", **kwargs)


def test_compose_rejects_a_non_integer_ghost_size():
    from hydra.errors import HydraException

    from conftest import compose

    with pytest.raises(HydraException, match="ghost_size"):  # the schema types it Optional[int]
        compose(["norm=batch", "norm.ghost_size=abc"])


def test_build_ghost_model(tiny_data):
    from conftest import compose

    from bnbench.train import build

    cfg = compose(["norm=batch", f"data.root={tiny_data}", "norm.impl=bnbench", "norm.stats=ghost",
                   "norm.ghost_size=10"])
    parts = build(cfg)
    model = parts.system.model
    layers = [m for m in model.modules() if isinstance(m, BatchNorm)]
    assert layers and all((m.stats, m.ghost_size) == ("ghost", 10) for m in layers)
    parts.datamodule.setup()
    x, _ = next(iter(parts.datamodule.train_dataloader()))
    assert len(x) % 10 == 0
    model.train()(x).sum().backward()
    assert all(m.num_batches_tracked.item() == 1 and m.weight.grad is not None for m in layers)
