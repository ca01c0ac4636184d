"""Epoch orders (shard | within_shard | global) and the co-batch rate that measures them."""

from __future__ import annotations

import pytest
import torch

from bnbench.data.ordering import MODES, co_batch_rate, epoch_order, shard_bounds


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def runs(order: torch.Tensor, bounds) -> list[torch.Tensor]:
    """The order cut into the consecutive pieces each shard should occupy (checked by the caller)."""
    pieces, i = [], 0
    while i < len(order):
        start = next(s for s, e in bounds if s <= order[i] < e)
        stop = next(e for s, e in bounds if s == start)
        pieces.append(order[i : i + stop - start])
        i += stop - start
    return pieces


@pytest.mark.parametrize("n,num_shards", [(100, 10), (103, 7), (60, 1), (5, 5)])
def test_shard_bounds_partition(n, num_shards):
    bounds = shard_bounds(n, num_shards)
    assert len(bounds) == num_shards
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [e - s for s, e in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n,num_shards", [(100, 10), (103, 7), (64, 1)])
def test_epoch_order_is_permutation(mode, n, num_shards):
    order = epoch_order(mode, n, num_shards, gen(0))
    assert order.dtype == torch.long
    assert torch.equal(torch.sort(order).values, torch.arange(n))


@pytest.mark.parametrize("mode", ["shard", "within_shard"])
def test_shards_are_contiguous(mode):
    n, num_shards = 103, 7
    bounds = shard_bounds(n, num_shards)
    order = epoch_order(mode, n, num_shards, gen(1))
    pieces = runs(order, bounds)
    assert len(pieces) == num_shards
    starts = []
    for piece in pieces:
        s = int(piece.min())
        e = next(e for s0, e in bounds if s0 == s)
        # the piece is exactly one shard's examples
        assert torch.equal(torch.sort(piece).values, torch.arange(s, e))
        starts.append(s)
        if mode == "shard":
            assert torch.equal(piece, torch.arange(s, e))  # stored (ascending) order
    # The shards themselves are visited in a shuffled order.
    assert starts != sorted(starts)


def test_within_shard_permutes_inside_each_shard():
    n, num_shards = 100, 5
    order = epoch_order("within_shard", n, num_shards, gen(2))
    pieces = runs(order, shard_bounds(n, num_shards))
    assert all(not torch.equal(p, torch.sort(p).values) for p in pieces)


def test_global_differs_from_sharded_orders():
    n, num_shards = 100, 5
    bounds = shard_bounds(n, num_shards)
    order = epoch_order("global", n, num_shards, gen(3))
    # Under a global permutation the first 20 examples come from several shards.
    shards_in_first = {next(i for i, (s, e) in enumerate(bounds) if s <= x < e) for x in order[:20].tolist()}
    assert len(shards_in_first) > 1
    for mode in ("shard", "within_shard"):
        assert not torch.equal(order, epoch_order(mode, n, num_shards, gen(3)))


@pytest.mark.parametrize("mode", MODES)
def test_epoch_order_deterministic_given_generator(mode):
    a = epoch_order(mode, 50, 5, gen(4))
    b = epoch_order(mode, 50, 5, gen(4))
    c = epoch_order(mode, 50, 5, gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown shuffle mode"):
        epoch_order("sorted", 10, 2, gen(0))


# --------------------------------------------------------------------------- co_batch_rate


def mean_rate(mode: str, n: int, num_shards: int, b: int, epochs: int = 4) -> float:
    g = gen(10)
    orders = [epoch_order(mode, n, num_shards, g) for _ in range(epochs)]
    rates = [co_batch_rate(a, o, b) for a, o in zip(orders, orders[1:])]
    return sum(rates) / len(rates)


def test_identical_orders_give_one():
    order = torch.randperm(100, generator=gen(0))
    assert co_batch_rate(order, order, 10) == 1.0
    assert co_batch_rate(order, order, 7) == 1.0  # partial last batch dropped


def test_hand_computed_rate():
    a = torch.tensor([0, 1, 2, 3])
    b = torch.tensor([0, 2, 1, 3])  # batches {0,2},{1,3}: none of a's pairs {0,1},{2,3} again
    assert co_batch_rate(a, b, 2) == 0.0
    c = torch.tensor([1, 0, 3, 2])  # same batches, other order
    assert co_batch_rate(a, c, 2) == 1.0
    d = torch.tensor([0, 1, 3, 2, 4, 5])  # b=4: a has {0,1,2,3}; d has {0,1,3,2}
    assert co_batch_rate(torch.arange(6), d, 4) == 1.0
    e = torch.tensor([0, 1, 4, 5, 2, 3])  # b=4: of a's 6 pairs only {0,1} shares d's batch again
    assert co_batch_rate(torch.arange(6), e, 4) == pytest.approx(1 / 6)


def test_shard_mode_divisible_gives_exactly_one():
    n, num_shards, b = 6400, 50, 32  # shards of 128 = 4 batches
    g = gen(11)
    first, second = epoch_order("shard", n, num_shards, g), epoch_order("shard", n, num_shards, g)
    assert not torch.equal(first, second)  # shard order changed...
    assert co_batch_rate(first, second, b) == 1.0  # ...but the batches did not


def test_global_rate_close_to_chance():
    n, b = 6000, 32
    expected = (b - 1) / (n - 1)
    assert mean_rate("global", n, 60, b) == pytest.approx(expected, rel=0.1)


def test_within_shard_rate():
    n, num_shards, b = 6400, 50, 32
    shard_size = n // num_shards
    expected = (b - 1) / (shard_size - 1)
    rate = mean_rate("within_shard", n, num_shards, b)
    assert rate == pytest.approx(expected, rel=0.1)
    # Far above global, far below shard.
    assert (b - 1) / (n - 1) * 10 < rate < 0.5


def test_shard_bounds_exact_for_large_n():
    """Integer edges: no example is lost to float rounding, even past 2**24."""
    n = 2**24 + 1
    bounds = shard_bounds(n, 7)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
