"""A launch of `bnbench train -m ...` (Hydra's basic sweeper), reported like a study's.

Such a launch (<results>/<study>/<launch>/, `adhoc` outside a study) holds run records only: no
study.json, no variants, no reference. Its variants are the swept keys: the overrides whose
values differ between its runs (the seed aside), named as the runs had them, e.g.
`norm=batch,recipe.lr=0.1`; its seeds are the records'. With no reference there is no target
and no claim: the report shows each variant's accuracies. The launch description made here is
archived with the report (as study.json), so a rebuild from the report folder reads it back.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bnbench.overrides import key_of, value_text
from bnbench.results.store import record_order

KIND = "multirun"
NOT_SWEPT = ("seed", "study.", "hydra.")  # a seed sweep gives seeds, not variants
HYDRA_RECORD = "multirun.yaml"  # Hydra's own account of the sweep, in its output folder


def is_multirun(meta: dict) -> bool:
    return meta.get("kind") == KIND


def _settings(record: dict) -> dict[str, str]:
    """A run's command-line overrides by key (the last one of a key wins, as in Hydra)."""
    return {key_of(o): o for o in record.get("overrides") or []}


def swept_keys(records: list[dict]) -> list[str]:
    """The keys whose overrides differ between the runs, in the order the runs name them."""
    settings = [_settings(r) for r in records]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    return [k for k in keys if not k.startswith(NOT_SWEPT) and len({s.get(k) for s in settings}) > 1]


def _typed(settings: dict[str, str], keys: list[str]) -> tuple:
    """A sort key over the swept values: numbers by value, before words; a key a run lacks first."""
    def typed(o: str | None):
        if o is None:
            return (0, 0.0, "")
        v = o if value_text(o) is None else value_text(o)
        try:
            return (1, float(v), v)
        except ValueError:
            return (2, 0.0, v)
    return tuple(typed(settings.get(k)) for k in keys)


def variant_name(record: dict, keys: list[str]) -> str:
    s = _settings(record)
    return ",".join(s[k] for k in keys if k in s) or record.get("variant") or "run"


def _hydra_record(records: list[dict]) -> dict:
    """Hydra's multirun.yaml of the sweep, where it is still beside the runs' outputs ({} if not)."""
    for r in records:
        if r.get("output_dir"):
            path = Path(r["output_dir"]).parent / HYDRA_RECORD
            try:
                return (yaml.safe_load(path.read_text()) or {}).get("hydra") or {}
            except (OSError, yaml.YAMLError, AttributeError):
                continue
    return {}


def _command(records: list[dict], hydra: dict) -> tuple[list[str], bool]:
    """The sweep's command line: Hydra's record of it, else rebuilt from the runs' overrides
    (each key with its values in the order first seen, comma-joined); True when rebuilt."""
    task = ((hydra.get("overrides") or {}).get("task"))
    if isinstance(task, list) and task:
        return ["bnbench", "train", "-m", *map(str, task)], False
    values: dict[str, list[str]] = {}
    for r in records:
        for key, o in _settings(r).items():
            v = o if value_text(o) is None else value_text(o)
            values.setdefault(key, [])
            if v not in values[key]:
                values[key].append(v)
    args = [f"{key}={','.join(vs)}" for key, vs in values.items()]
    return ["bnbench", "train", "-m", *args], True


def launch_meta(launch_dir: Path, records: list[dict]) -> tuple[dict, list[dict]]:
    """(the launch's description, as a study's study.json has it; the records with their
    variant named from the swept keys), in a report's order."""
    keys = swept_keys(records)
    records = sorted(({**r, "variant": variant_name(r, keys)} for r in records), key=record_order)
    variants: dict[str, list[str]] = {}
    for r in sorted(records, key=lambda r: _typed(_settings(r), keys)):  # lr 2 before lr 10
        s = _settings(r)
        variants.setdefault(r["variant"], [s[k] for k in keys if k in s])
    seeds = sorted({r["seed"] for r in records if isinstance(r["seed"], int)})
    hydra = _hydra_record(records)
    command, rebuilt = _command(records, hydra)
    started = sorted(str(r["started"]) for r in records if r.get("started"))
    swept = ", ".join(f"`{k}`" for k in keys) or "none (the runs differ in their seeds only)"
    meta = {
        "kind": KIND,
        "study": records[0].get("study") or "adhoc",
        "launch": records[0].get("launch") or Path(launch_dir).name,
        "spec": {"description": f"A `bnbench train -m` sweep, without a study file: its variants are the keys "
                                f"swept, {swept}; no reference, so no target, speed-up or claim.",
                 "seeds": seeds or [0], "variants": variants},
        "spec_path": str(launch_dir),
        "seeds": seeds,
        "command": command,
        "command_rebuilt": rebuilt,
        "launcher": hydra.get("launcher"),
        "started": started[0] if started else None,
        "last_started": started[-1] if started else None,
        "jobs": len(records),
    }
    return meta, records


def command_text(meta: dict) -> str:
    rebuilt = " (rebuilt from the runs' overrides: Hydra's multirun.yaml was not found)"
    return f"`{' '.join(meta['command'])}`" + (rebuilt if meta.get("command_rebuilt") else "")


def launch_text(meta: dict) -> str:
    return (f"`{meta['launch']}`, a `bnbench train -m` sweep (no study.json); runs started from {meta.get('started')} "
            f"to {meta.get('last_started')}")
