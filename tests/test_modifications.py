"""Sec. 4.2.1: one test per modification, asserting its effect on the built objects."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnbench.data.ordering import co_batch_rate
from bnbench.train import build
from conftest import compose

BASE = ["experiment=inception"]


def built(tiny, *overrides):
    return build(compose([*BASE, f"data.root={tiny}", *overrides]))


def optimizer_and_schedule(parts):
    conf = parts.system.configure_optimizers()
    return conf["optimizer"], conf["lr_scheduler"]["scheduler"]


@pytest.mark.parametrize("option,scale", [("x1", 1), ("x5", 5), ("x30", 30)])
def test_lr_scale(tiny_data, option, scale):
    base = compose([*BASE, f"data.root={tiny_data}"]).recipe.lr
    opt, _ = optimizer_and_schedule(built(tiny_data, f"lr={option}"))
    assert all(g["lr"] == pytest.approx(base * scale) for g in opt.param_groups)


def test_dropout_remove_leaves_no_active_dropout(tiny_data):
    kept = built(tiny_data, "dropout=keep").system.model
    removed = built(tiny_data, "dropout=remove").system.model
    assert [m.p for m in kept.modules() if isinstance(m, nn.Dropout)] == [0.4]
    assert not [m for m in removed.modules() if isinstance(m, nn.Dropout) and m.p > 0]


def test_l2_reduced_is_one_fifth(tiny_data):
    base, _ = optimizer_and_schedule(built(tiny_data, "l2=base"))
    reduced, _ = optimizer_and_schedule(built(tiny_data, "l2=reduced"))
    assert base.param_groups[0]["weight_decay"] > 0
    assert reduced.param_groups[0]["weight_decay"] == pytest.approx(base.param_groups[0]["weight_decay"] / 5)
    # gamma/beta and biases are exempt in both
    assert base.param_groups[1]["weight_decay"] == reduced.param_groups[1]["weight_decay"] == 0


def test_lr_decay_fast_decays_six_times_faster(tiny_data):
    def lr_after(option, steps):
        opt, sched = optimizer_and_schedule(built(tiny_data, f"lr_decay={option}"))
        for _ in range(steps):
            opt.step()
            sched.step()
        return opt.param_groups[0]["lr"] / opt.param_groups[0]["initial_lr"]

    base, fast = lr_after("base", 300), lr_after("fast", 300)
    assert base < 1
    assert torch.log(torch.tensor(fast)) / torch.log(torch.tensor(base)) == pytest.approx(6.0, rel=1e-4)


def test_lrn_remove_leaves_no_lrn(tiny_data):
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in built(tiny_data, "lrn=keep").system.model.modules()) == 2
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in built(tiny_data, "lrn=remove").system.model.modules())


def test_shuffle_modes_differ_in_how_often_pairs_share_a_batch(tiny_data):
    """Shard-order reading keeps the same examples together epoch after epoch; within-shard
    shuffling breaks that up; a global permutation more so."""
    rates = {}
    for mode in ("shard", "within_shard", "global"):
        parts = built(tiny_data, f"shuffle={mode}", "data.num_shards=6", "recipe.batch_size=20")
        rates[mode] = co_batch_rate(parts.datamodule.train_order(0), parts.datamodule.train_order(1), 20)
    assert rates["shard"] == 1.0  # 600 examples, 6 shards of 100, batches of 20
    assert rates["global"] < rates["within_shard"] < 0.5
    assert rates["within_shard"] == pytest.approx(19 / 99, abs=0.05)


def test_distort_reduced_weakens_every_distortion(tiny_data):
    base = built(tiny_data, "distort=base").system.distortion
    reduced = built(tiny_data, "distort=reduced").system.distortion
    assert base.brightness > 0 and base.contrast > 0
    assert reduced.brightness == pytest.approx(base.brightness * 0.5)
    assert reduced.contrast == pytest.approx(base.contrast * 0.5)
    assert base.saturation == 0 and base.hue == 0  # grayscale: no colour to jitter
    # and on images: the per-example brightness spreads half as far
    torch.manual_seed(0)
    x = torch.full((512, 1, 8, 8), 0.5)
    assert reduced(x).mean((1, 2, 3)).std() < 0.7 * base(x).mean((1, 2, 3)).std()


def test_each_modification_is_read_in_one_place():
    """grep for each toggle's config key: one reader, bnbench/recipe.py."""
    from pathlib import Path

    src = {p: p.read_text() for p in Path(__file__).resolve().parents[1].joinpath("bnbench").rglob("*.py")}
    for key in ("cfg.lr.scale", "cfg.dropout.keep", "cfg.l2.factor", "cfg.lr_decay.speedup", "cfg.lrn.keep",
                "cfg.shuffle.mode", "cfg.distort.factor"):
        readers = {p.name for p, text in src.items() if key in text}
        assert readers == {"recipe.py"}, (key, readers)
