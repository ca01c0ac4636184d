"""Writing and reading run records.

Layout under `paths.results`:

    <study>/<launch>/<variant>_s<seed>_<run_id>/record.json   the run's record (schema: README)
                                               /curves.json   its evaluation curves and probes
    <study>/<launch>/study.json                               the launch: spec, command, timing

Both files are written atomically (temp file + rename), curves first: a record.json exists
only for a run that finished, whatever its status, and never half-written. Non-finite
numbers (a diverged run's loss) are stored as null.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

RECORD = "record.json"
CURVES = "curves.json"
STUDY = "study.json"
SCHEMA_VERSION = 1


def finite(obj):
    """JSON has no NaN or infinity (and we write strict JSON): such values become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj) -> None:
    obj = finite(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_run(run_dir: Path, record: dict, curves: dict) -> Path:
    write_json_atomic(run_dir / CURVES, curves)
    write_json_atomic(run_dir / RECORD, record)
    return run_dir / RECORD


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def read_records(launch_dir: Path, with_curves: bool = True) -> list[dict]:
    """Every finished run under a launch directory, sorted by (variant, seed); curves attached."""
    records = []
    for path in sorted(Path(launch_dir).glob(f"*/{RECORD}")):
        rec = read_json(path)
        if with_curves:
            rec["curves"] = read_json(path.parent / CURVES)
        records.append(rec)
    return sorted(records, key=lambda r: (str(r.get("variant")), r["seed"]))


def latest_launch(results: Path, study: str) -> Path | None:
    """The most recent launch directory of a study (launch names are sortable timestamps)."""
    root = Path(results) / study
    launches = sorted(p for p in root.glob("*") if p.is_dir() and (p / STUDY).exists()) if root.is_dir() else []
    return launches[-1] if launches else None


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
