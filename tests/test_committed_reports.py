"""Every committed report that carries its records (reports/<study>/records.jsonl.gz and
study.json) rebuilds from the repository alone to the same report.md and runs.csv: the report
is a pure function of what is committed beside it. Reports made before bnbench kept their
records are listed as skipped, with the reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bnbench.report.build import build_report
from bnbench.results.archive import has_archive

REPORTS = Path(__file__).resolve().parents[1] / "reports"
COMMITTED = sorted(p for p in REPORTS.iterdir() if (p / "report.md").is_file()) if REPORTS.is_dir() else []


@pytest.mark.parametrize("report", COMMITTED, ids=[p.name for p in COMMITTED])
def test_a_committed_report_rebuilds_from_its_own_records(report, tmp_path):
    if not has_archive(report):
        pytest.skip(f"{report.name} predates committed records (no records.jsonl.gz): regenerate it to make it rebuildable")
    copy = tmp_path / report.name
    shutil.copytree(report, copy)
    build_report(copy)
    for name in ("report.md", "runs.csv", "records.jsonl.gz", "study.json"):
        assert (copy / name).read_bytes() == (report / name).read_bytes(), name
