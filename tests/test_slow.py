"""Long real runs (select with -m slow)."""

from __future__ import annotations

import json

import pytest

from conftest import needs_fashion, run_cli

pytestmark = [pytest.mark.slow, needs_fashion]


def test_paper_mnist_quick_version_end_to_end(tmp_path):
    """The main job, shortened, on the real Fashion-MNIST: every cell and variant reported."""
    proc = run_cli("study", "paper_mnist", "trainer.max_steps=3000", "run.eval_every=250", "hydra.sweeper.seeds=[0]",
                   "logger=none", cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "reports" / "paper_mnist" / "report.md").read_text()
    for lr in ("0.1", "1.0", "4.0"):
        assert f"## Results: recipe.lr={lr}" in report
    rows = (tmp_path / "reports" / "paper_mnist" / "runs.csv").read_text().splitlines()
    assert len(rows) == 1 + 6
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("record.json")]
    assert {r["status"] for r in records} == {"completed"}
    assert all(r["best_acc"] > 0.7 for r in records)  # 3,000 steps of 60 learn Fashion-MNIST well past chance
