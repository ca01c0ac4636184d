"""Writing and reading run records.

Layout under `paths.results`:

    <study>/<launch>/<variant>_s<seed>_<run_id>/record.json   the run's record (bnbench/results/record.py)
                                               /curves.json   its evaluation curves and probes
    <study>/<launch>/study.json                               the launch: spec, command, timing

Every file bnbench writes (records, curves, study.json, report.md, runs.csv, figures) goes
through one helper, `write_atomic`: a temporary file of its own in the same directory,
written, flushed and fsynced, then renamed over the target (and the directory fsynced), the
temporary file removed on any failure. A reader sees the old file or the new one, never a
half-written one, and concurrent writers never share a temporary file. Curves are written
before the record: a record.json exists only for a run that finished, whatever its status.
Non-finite numbers (a diverged run's loss) are stored as null.

Readers skip, with a warning naming the file, what is not a finished run's record: a file
that is not JSON (truncated, foreign), a record.json without the keys a record has, a run
whose curves.json is unreadable, and temporary files (a write in progress or interrupted).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path

from bnbench.results.record import CURVE_KEYS, RECORD_KEYS

log = logging.getLogger("bnbench")

RECORD = "record.json"
CURVES = "curves.json"
STUDY = "study.json"
TMP_SUFFIX = ".tmp"  # temporary files: .<name>.<random>.tmp beside their target
# `bnbench study` hands the user's overrides to the study sweeper, which keeps them in study.json
# (`user_overrides`: the command a report shows), through this environment variable (JSON)
USER_OVERRIDES_ENV = "BNBENCH_STUDY_OVERRIDES"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp's are 0600)


def finite(obj):
    """JSON has no NaN or infinity (and we write strict JSON): such values become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Replace `path` by `data` atomically and durably (see the module's docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (not every file system can)."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_json_atomic(path: Path, obj) -> Path:
    return write_atomic(path, json.dumps(finite(obj), indent=1, allow_nan=False))


def run_folder(variant: str | None, seed, run_id: str) -> str:
    """A run's folder under its launch: <variant>_s<seed>_<run id> (`run` for a run outside a study)."""
    return f"{variant or 'run'}_s{seed}_{run_id}"


def write_run(run_dir: Path, record: dict, curves: dict) -> Path:
    write_json_atomic(run_dir / CURVES, curves)
    write_json_atomic(run_dir / RECORD, record)
    return run_dir / RECORD


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


class UnreadableRecord(ValueError):
    """A record.json (or its curves.json) that is not a finished run's: skipped by readers."""


def _check(obj, keys: tuple, path: Path) -> dict:
    if not isinstance(obj, dict):
        raise UnreadableRecord(f"{path}: not a JSON object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise UnreadableRecord(f"{path}: missing {', '.join(missing)}")
    return obj


def read_record(path: Path, with_curves: bool = True) -> dict:
    """One run's record (and its curves); UnreadableRecord naming the file if it is not one."""
    path = Path(path)
    try:
        rec = _check(read_json(path), RECORD_KEYS, path)
    except (OSError, ValueError) as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UnreadableRecord(e if isinstance(e, UnreadableRecord) else f"{path}: {e}") from None
    if with_curves:
        curves = path.parent / CURVES
        try:
            rec["curves"] = _check(read_json(curves), CURVE_KEYS, curves)
        except (OSError, ValueError) as e:
            raise UnreadableRecord(e if isinstance(e, UnreadableRecord) else f"{curves}: {e}") from None
    return rec


def read_records(launch_dir: Path, with_curves: bool = True) -> list[dict]:
    """Every finished run under a launch directory, sorted by (variant, seed); curves attached.
    Files that are not finished runs' records are skipped with a warning naming them."""
    launch_dir = Path(launch_dir)
    records = []
    for path in sorted(launch_dir.glob(f"*/{RECORD}")):
        try:
            records.append(read_record(path, with_curves))
        except UnreadableRecord as e:
            log.warning("skipping %s: not a readable run record (%s)", path, e)
    for tmp in sorted(launch_dir.glob(f".*{TMP_SUFFIX}")) + sorted(launch_dir.glob(f"*/.*{TMP_SUFFIX}")):
        log.warning("ignoring %s: a temporary file (a write in progress, or one interrupted)", tmp)
    return sorted(records, key=record_order)


def record_order(record: dict) -> tuple:
    """Runs in a report's order: by variant, then seed."""
    return str(record["variant"]), record["seed"] if isinstance(record["seed"], int) else -1


def latest_launch(results: Path, study: str) -> Path | None:
    """The most recent launch directory of a study (launch names are sortable timestamps)."""
    root = Path(results) / study
    launches = sorted(p for p in root.glob("*") if p.is_dir() and (p / STUDY).exists()) if root.is_dir() else []
    return launches[-1] if launches else None
