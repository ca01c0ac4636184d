"""A report's own copy of what it was made from: `records.jsonl.gz` (every run's record with its
curves, one JSON line each) and `study.json` (the launch), beside `report.md`.

With them a committed report rebuilds from the repository alone (`bnbench report
reports/<study>`), and anyone can re-analyse it. The archive is written by every report build,
deterministically (sorted runs, gzip without a timestamp), so rebuilding a report from its own
archive rewrites the same bytes. Records keep their floats exactly (JSON's shortest repr round
trips), so a rebuilt report's figures are the original's.

The bulk of an MLP run's record is its probe (Fig. 1b, c: 3 quantiles x 100 units at every
evaluation, ~1.2 MB of JSON for 200 evaluations): `compact` keeps 4 significant digits of those
(about 140 KB per run compressed), and a report is always built from compacted records, so the
first build and every rebuild read the same numbers.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from bnbench.results.store import STUDY, finite, read_json, record_order, write_atomic, write_json_atomic

RECORDS = "records.jsonl.gz"


PROBE_DIGITS = 4


def compact(record: dict) -> dict:
    """The record as archived: probe quantiles to PROBE_DIGITS significant digits (idempotent)."""
    curves = record.get("curves") or {}
    if not curves.get("probe"):
        return record
    def digits(x):
        return x if x is None else float(f"{x:.{PROBE_DIGITS}g}")
    probe = [[[digits(x) for x in unit] for unit in q] for q in curves["probe"]]
    return {**record, "curves": {**curves, "probe": probe}}


def has_archive(folder: Path) -> bool:
    return (Path(folder) / RECORDS).is_file() and (Path(folder) / STUDY).is_file()


def write_archive(folder: Path, meta: dict, records: list[dict]) -> None:
    lines = [json.dumps(finite(r), sort_keys=True, allow_nan=False)
             for r in sorted(records, key=lambda r: (*record_order(r), r["run_id"]))]
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode())
    write_atomic(Path(folder) / RECORDS, buf.getvalue())
    write_json_atomic(Path(folder) / STUDY, meta)


def read_archive(folder: Path) -> tuple[dict, list[dict]]:
    """(launch meta, records with curves) from a report folder's archive."""
    folder = Path(folder)
    with gzip.open(folder / RECORDS, "rt") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return read_json(folder / STUDY), sorted(records, key=record_order)
