"""Read the records of an offline W&B run (`run-*.wandb`), to check what a job logged: its
config, history rows, summary, and the tables it logged (files beside it).

The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks
of chunks, each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)
holding a serialized `wandb_internal_pb2.Record`. wandb 0.31 keeps this format but no longer
ships a Python reader for it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # too little room left for a chunk header: next block
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def summary_and_run(path: Path) -> tuple[dict, dict]:
    """The last summary values, and the run's group, job type, config keys and exit code."""
    summary, run = {}, {}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "summary":
            summary.update({u.key: json.loads(u.value_json) for u in r.summary.update})
        elif kind == "run":
            run.update(group=r.run.run_group, job_type=r.run.job_type,
                       config={u.key for u in r.run.config.update})
        elif kind == "exit":
            run["exit_code"] = r.exit.exit_code
    return summary, run


def _fold(into: dict, updates) -> dict:
    """Config, summary or history items into `into`; a nested key (a metric's summary such as
    {"max": ...}, a logged table's reference) as nested dicts."""
    for u in updates:
        *outer, last = list(u.nested_key) or [u.key]
        target = into
        for k in outer:
            target = target.setdefault(k, {})
        target[last] = json.loads(u.value_json)
    return into


def config(path: Path) -> dict:
    """The run's config values: what wandb.init was given, and any later updates."""
    out: dict = {}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            _fold(out, r.run.config.update)
        elif kind == "config":
            _fold(out, r.config.update)
    return out


def history(path: Path) -> list[dict]:
    """The run's history: one dict per logged row, in order."""
    return [_fold({}, r.history.item) for r in records(path) if r.WhichOneof("record_type") == "history"]


def summary(path: Path) -> dict:
    """The run's final summary, nested keys as nested dicts."""
    out: dict = {}
    for r in records(path):
        if r.WhichOneof("record_type") == "summary":
            _fold(out, r.summary.update)
    return out


def table(path: Path, key: str) -> dict:
    """The table logged under `key`: {"columns", "data"}, read from the media file its summary
    entry points to (under the run folder's files/)."""
    ref = summary(path)[key]
    assert ref["_type"] == "table-file", ref
    return json.loads((Path(path).parent / "files" / ref["path"]).read_text())
