"""A study file, `ablations/<name>.yaml`, and the jobs it expands to.

`bnbench study <name>` finds <name>.yaml in ./ablations under the directory it runs from,
then among the studies that come with bnbench (`search_path`).

    description: what the study asks
    seeds: [0, 1, 2]
    overrides: [...]              # applied to every job
    variants:                     # name -> the overrides that make it
      baseline: [experiment=mnist_baseline]
      bn: [experiment=mnist_bn]
    grid:                         # optional, crossed with every variant
      recipe.lr: [0.5, 2.0]
    reference: baseline           # whose best accuracy is the target (per grid cell, per seed)
    claims: [...]                 # verdict rules for the report (bnbench/report/claims.py)
    contrasts: [[a, b], ...]      # extra paired ratios in the report: b's steps / a's steps

Jobs are variants x grid cells x seeds. Each job's overrides are, in order (a later value for
the same key wins): the study's `overrides`, the variant's, the grid cell's, the job's
identity (seed, study.*), then whatever the user gave on the command line.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from bnbench.errors import ConfigError
from bnbench.overrides import dedupe, value_of
from bnbench.resources import ABLATIONS

KEYS = {"description", "seeds", "overrides", "variants", "grid", "reference", "claims", "contrasts"}


@dataclass
class StudySpec:
    name: str
    path: Path
    description: str
    seeds: list[int]
    variants: dict[str, list[str]]
    overrides: list[str] = field(default_factory=list)
    grid: dict[str, list] = field(default_factory=dict)
    reference: str | None = None
    claims: list[dict] = field(default_factory=list)
    contrasts: list[list[str]] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def cells(self) -> list[dict]:
        """Every combination of the grid's values ([{}] without a grid)."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def jobs(self, launch: str, seeds: list[int] | None = None, extra: list[str] = ()) -> list[list[str]]:
        out = []
        for cell in self.cells():
            for variant, variant_overrides in self.variants.items():
                for seed in seeds if seeds is not None else self.seeds:
                    out.append(dedupe([
                        *self.overrides,
                        *variant_overrides,
                        *(f"{k}={v}" for k, v in cell.items()),
                        f"seed={seed}",
                        f"study.name={self.name}",
                        f"study.variant={variant}",
                        f"study.launch={launch}",
                        *extra,
                    ]))
        return out


def launch_of(overrides: list[str]) -> str:
    """The launch a study's overrides name (`study.launch=...`, the last one wins, as in Hydra),
    or a new one stamped now. Naming an earlier launch relaunches it."""
    given = value_of(overrides, "study.launch")
    return str(given) if given is not None else datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def search_path() -> list[Path]:
    """Where `bnbench study <name>` looks for <name>.yaml, in order: ./ablations under the
    directory bnbench runs from, then the studies that come with bnbench (ABLATIONS)."""
    local = Path.cwd() / "ablations"
    return [local, ABLATIONS] if local.resolve() != ABLATIONS.resolve() else [ABLATIONS]


def studies() -> list[tuple[str, Path]]:
    """Every study a name finds: (name, file), the first in the search path winning."""
    found: dict[str, Path] = {}
    for folder in search_path():
        for p in sorted(folder.glob("*.yaml")):
            found.setdefault(p.stem, p)
    return sorted(found.items())


def available() -> list[str]:
    return [name for name, _ in studies()]


def find_study(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"study file not found: {path}")
        return path
    for folder in search_path():
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    raise ConfigError(f"no study named {name!r} in {' or '.join(str(f) for f in search_path())} "
                      f"(available: {', '.join(available()) or 'none'})")


def load_study(name: str) -> StudySpec:
    path = find_study(name)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"study file {path} is not valid YAML: {' '.join(str(e).split())}") from None
    return parse_study(raw, path.stem, path.resolve())


def parse_study(raw, name: str, path: Path) -> StudySpec:
    """Validate a study file's contents (also as kept in a launch's study.json)."""
    where = f"study file {path}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    unknown = set(raw) - KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (known: {sorted(KEYS)})")
    variants = raw.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{where}: 'variants' must map variant names to lists of overrides")
    for v, ov in variants.items():
        if not isinstance(ov, list) or not all(isinstance(o, str) for o in ov):
            raise ConfigError(f"{where}: variants.{v} must be a list of override strings")
    seeds = raw.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{where}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{where}: 'grid' must map config keys to non-empty lists of values")
    contrasts = raw.get("contrasts") or []
    for pair in contrasts:
        if not (isinstance(pair, list) and len(pair) == 2 and all(v in variants for v in pair)):
            raise ConfigError(f"{where}: each contrast must be [variant, variant], got {pair!r}")
    reference = raw.get("reference")
    if reference is not None and reference not in variants:
        raise ConfigError(f"{where}: reference {reference!r} is not one of the variants {sorted(variants)}")
    return StudySpec(
        name=name,
        path=path,
        description=str(raw.get("description", "")).strip(),
        seeds=seeds,
        variants={k: list(v) for k, v in variants.items()},
        overrides=list(raw.get("overrides") or []),
        grid=grid,
        reference=reference,
        claims=list(raw.get("claims") or []),
        contrasts=[list(pair) for pair in contrasts],
        raw=raw,
    )
