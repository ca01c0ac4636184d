"""Studies that fill the machine (roadmap: sweep throughput >= 0.9 x min(jobs, cores) x the
single-job rate on CPU). The real `bnbench train -m` through the launcher studies use
(`hydra/launcher=local`: joblib, one job per core, `run.threads=1`), against one job alone, side
by side, on the embedded default data. Nothing asserts a time; the figures are printed and kept
in .benchmarks/latest.json."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from timing import side_by_side

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"  # conf/data/fashion_mnist.yaml's root
STEPS = 15000  # the paper MLP + BN: ~25 s per job, long against a job's start-up (imports, data)


def sweep(tmp_path: Path, seeds: list[int]) -> None:
    """`bnbench train -m` of one job per seed, placed by the studies' launcher."""
    out = tmp_path / f"n{len(seeds)}"
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "-m", "bnbench.cli", "train", "-m", "experiment=mnist_bn", f"trainer.max_steps={STEPS}",
         "run.eval_every=1000", "logger=none", "hydra/launcher=local", "run.threads=1",
         "trainer.enable_progress_bar=false", f"seed={','.join(map(str, seeds))}", f"paths.results={out}/results",
         f"hydra.sweep.dir={out}/multirun", "study.launch=bench"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    subprocess.run(["rm", "-rf", str(out)], check=True)


def test_a_sweep_fills_the_cores(benchmark, tmp_path):
    if not Path(DEFAULT_DATA).is_dir():
        pytest.skip(f"the default data is not installed ({DEFAULT_DATA})")
    cores = len(os.sched_getaffinity(0))
    jobs = 2 * cores  # two waves: every core busy twice
    medians = side_by_side({"one job": lambda: sweep(tmp_path, [0]),
                            f"{jobs} jobs": lambda: sweep(tmp_path, list(range(jobs)))}, rounds=2)
    one, many = medians["one job"], medians[f"{jobs} jobs"]
    # jobs per second of the sweep, over min(jobs, cores) x a lone job's rate
    efficiency = (jobs / many) / (min(jobs, cores) / one)
    benchmark.extra_info.update(one_job_s=one, sweep_s=many, jobs=jobs, cores=cores, efficiency=efficiency)
    print(f"\n[bench] placement: one job {one:.1f} s; {jobs} jobs on {cores} cores {many:.1f} s; throughput "
          f"{jobs / many:.3f} jobs/s = {efficiency:.2f} x min(jobs, cores) x the lone job's rate (target >= 0.9)")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
