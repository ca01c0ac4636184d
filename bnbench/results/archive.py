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
from typing import NamedTuple

from bnbench.errors import ConfigError
from bnbench.report.adhoc import is_multirun
from bnbench.results.store import (RECORD, STUDY, finite, read_json, record_order, run_folder, write_atomic,
                                   write_json_atomic, write_run)

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


class Restored(NamedTuple):
    launch_dir: Path
    written: int  # runs written
    kept: int  # runs that were already in the store
    meta: dict  # the launch's study.json, as archived
    commits: list[str]  # the commits the archived runs were made at


def restore_launch(folder: Path, results: Path) -> Restored:
    """Write a study report's archived runs back into the results store as its launch
    (<results>/<study>/<launch>/<variant>_s<seed>_<run id>/, and the launch's study.json when it has
    none), so that `bnbench study <study> study.launch=<launch>`, from a checkout of the commit the
    runs were made at, finishes it: a run with a record is skipped there, by its id. Runs already
    in the store are left as they are; nothing is written for a launch folder of another study."""
    folder = Path(folder)
    if not has_archive(folder):
        raise ConfigError(f"{folder} holds no report archive ({RECORDS} and {STUDY}): nothing to restore")
    meta, records = read_archive(folder)
    if is_multirun(meta):
        raise ConfigError(f"{folder} is the report of a `bnbench train -m` sweep, not of a study launch: "
                          f"there is no launch to finish (rebuild it with `bnbench report {folder}`)")
    launch_dir = Path(results) / meta["study"] / meta["launch"]
    if (launch_dir / STUDY).is_file() and read_json(launch_dir / STUDY).get("study") != meta["study"]:
        raise ConfigError(f"{launch_dir / STUDY} is another study's launch: nothing restored")
    written = kept = 0
    for record in records:
        run_dir = launch_dir / run_folder(record["variant"], record["seed"], record["run_id"])
        if (run_dir / RECORD).exists():
            kept += 1
            continue
        rec = dict(record)
        write_run(run_dir, rec, rec.pop("curves"))
        written += 1
    if not (launch_dir / STUDY).is_file():
        write_json_atomic(launch_dir / STUDY, meta)
    commits = sorted({str(((r.get("env") or {}).get("git") or {}).get("sha")) for r in records})
    return Restored(launch_dir, written, kept, meta, commits)
