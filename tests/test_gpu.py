"""GPU checks (select with -m gpu); they skip cleanly on machines without CUDA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from bnbench.nn.batchnorm import BatchNorm

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_own_batchnorm_matches_torch_on_cuda_under_bf16_autocast():
    torch.manual_seed(0)
    x = torch.randn(32, 64, 14, 14, device="cuda", requires_grad=True)
    ours = BatchNorm(64).cuda()
    rm, rv = torch.zeros(64, device="cuda"), torch.ones(64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = ours(x)
    ref = F.batch_norm(x, rm, rv, torch.ones(64, device="cuda"), torch.zeros(64, device="cuda"), training=True)
    assert_close(y.float(), ref, rtol=0.05, atol=0.05)
    assert_close(ours.running_mean, rm, rtol=1e-3, atol=1e-3)


def test_bn_inception_trains_on_random_224_data_bf16_channels_last(tmp_path):
    """BN-Inception at 224x224, bf16 autocast, channels_last: a short real run; images/s printed."""
    from conftest import compose

    from bnbench.train import run

    cfg = compose(["data=synthetic", "model=bn_inception", "norm=batch", "logger=none", f"paths.results={tmp_path}",
                   "trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "run.channels_last=true",
                   "trainer.max_steps=60", "run.eval_every=60"])
    rec = run(cfg)
    assert rec["status"] == "completed" and rec["steps"] == 60
    assert rec["env"]["device"] == "cuda"
    images_per_s = rec["steps"] * cfg.data.batch_size / rec["train_s"]
    print(f"\n[gpu] BN-Inception bf16 channels_last, batch {cfg.data.batch_size}: {images_per_s:.0f} images/s "
          f"on {rec['env']['device_name']}")


def test_population_statistics_and_their_accuracies_on_the_gpu(tiny_data, tmp_path):
    """Alg. 2's population pass and the accuracies after it run outside Lightning's loops: the
    batches must still reach the model's device (train.py: Classifier.model_input). LRN (the
    Inception baseline keeps it) runs on the GPU too."""
    from conftest import compose

    from bnbench.train import run

    cfg = compose([f"data.root={tiny_data}", "model=inception_mini", "norm=batch", "norm.inference=population",
                   "norm.population_batches=3", "logger=none", f"paths.results={tmp_path}",
                   "trainer.accelerator=gpu", "trainer.max_steps=20", "run.eval_every=10"])
    assert cfg.recipe.lrn
    rec = run(cfg)
    assert rec["status"] == "completed" and rec["env"]["device"] == "cuda"
    assert rec["population_batches"] == 3 and rec["final_acc"] is not None and rec["final_acc_ema"] is not None
