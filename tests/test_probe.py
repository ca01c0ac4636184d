"""The Fig. 1(b, c) probe: taken before any update and at every evaluation, with normalization
over the probe batch as in training, leaving the network untouched; drift over the whole path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnbench.callbacks.tracker import RunTracker, batch_statistics, unit_quantiles
from bnbench.models.mlp import MLP
from bnbench.nn.norm import create_norm
from bnbench.report.drift import drift_summary, probe_steps


@pytest.mark.parametrize("impl, stats", [("torch", "device"), ("bnbench", "device"), ("bnbench", "ghost")])
def test_the_probe_normalizes_over_its_batch_and_leaves_the_network_as_it_was(impl, stats):
    """At step 0 the running estimates are (0, 1): in inference mode BN would not normalize. The
    probe sees normalized inputs (median ~0, 15th-85th spread ~2 for gamma 1, beta 0) and changes
    no buffer, mode or setting."""
    torch.manual_seed(0)
    kw = {"stats": stats, "ghost_size": 4} if stats == "ghost" else {}
    norm = create_norm(kind="batch", impl=impl, momentum=0.1, eps=1e-5, **kw)
    model = MLP(in_shape=(1, 28, 28), num_classes=10, norm_layer=norm, hidden=[100, 100, 100], activation="sigmoid",
                init_std=1.0)
    x = torch.rand(1000, 1, 28, 28) * 5
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    seen = []
    handle = model.probe_point.register_forward_hook(lambda m, i, out: seen.append(out))
    with torch.no_grad():
        model.eval()
        model(x)  # inference mode: running estimates (0, 1), not normalized
        with batch_statistics(model):
            model(x)
    handle.remove()
    raw, probed = unit_quantiles(seen[0]), unit_quantiles(seen[1])
    assert probed[1].abs().median() < 0.1 and ((probed[2] - probed[0]).median() - 2.07).abs() < 0.2
    assert (raw[2] - raw[0]).median() > 3  # what an inference-mode probe would have shown
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    layers = [m for m in model.modules() if hasattr(m, "running_mean")]
    assert layers and not any(m.training for m in layers)
    assert all(getattr(m, "stats", stats) == stats for m in layers)


def test_drift_counts_the_whole_path_and_reads_the_probe_steps():
    """A median that wanders off by one spread and comes back: no shift at the end, a path of 2."""
    def probe(median):  # one unit, spread 1 (15th at m - 0.5, 85th at m + 0.5)
        return [[[m - 0.5], [m], [m + 0.5]] for m in median]

    d = drift_summary(probe([0.0, 1.0, 0.0]))
    assert d["shift"] == pytest.approx(0.0) and d["path"] == pytest.approx(2.0)
    assert probe_steps({"step": [10, 20], "probe": probe([0, 1, 2]), "probe_step": [0, 10, 20]}) == [0, 10, 20]
    assert probe_steps({"step": [10, 20], "probe": probe([0, 1])}) == [10, 20]  # records before step-0 probes


def test_the_tracker_probes_before_the_first_update_and_not_again_on_resume():
    class Module:
        model = MLP(in_shape=(1, 4, 4), num_classes=3, norm_layer=None, hidden=[5], activation="sigmoid", init_std=0.1)
        device = torch.device("cpu")

        @staticmethod
        def model_input(x):  # Classifier.model_input, for float32 CPU inputs and an MLP
            return x

    class Trainer:
        global_step = 0

    tracker = RunTracker("t", torch.rand(8, 1, 4, 4))
    tracker.on_train_start(Trainer(), Module())
    assert tracker.probe_step == [0] and np.asarray(tracker.probe).shape == (1, 3, 5)
    resumed = RunTracker("t", torch.rand(8, 1, 4, 4))
    resumed.load_state_dict(tracker.state_dict())
    Trainer.global_step = 21
    resumed.on_train_start(Trainer(), Module())
    assert resumed.probe_step == [0]
