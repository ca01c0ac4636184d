"""Override strings (`key=value`, `+key=value`, `++key=value`, `~key`, `group@package=choice`),
read by Hydra's own parser: the key an override sets, the value a list of overrides gives a key
(the last wins, as in Hydra), a list with each key's last override only.

Hydra's parser (~0.1 s to import) is imported on first use, not with this module. A string Hydra
cannot parse raises its OverrideParseException.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

_UNSET = object()


@cache
def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


@lru_cache(maxsize=4096)
def parse(override: str):
    """Hydra's Override for `override` (shared between calls: do not change it)."""
    return _parser().parse_overrides([override])[0]


def key_of(override: str) -> str:
    """The key (or config group, with its @package) an override sets, without + ++ ~:
    `+a.b=1` -> `a.b`, `db@pkg=x` -> `db@pkg`."""
    o = parse(override)
    return o.key_or_group if o.package is None else f"{o.key_or_group}@{o.package}"


def value_of(overrides: list[str], key: str, default: Any = None) -> Any:
    """The value the last override of `key` gives it, as Hydra parses it (`a='x y'` -> `x y`,
    `a=2` -> 2), else `default`."""
    value = _UNSET
    for o in overrides:
        if key_of(o) == key:
            value = parse(o).value()
    return default if value is _UNSET else value


def value_text(override: str) -> str | None:
    """The value as written (after the first `=`: a key holds none), None for `~key`."""
    if "=" not in override:
        return None
    return override.split("=", 1)[1]


def dedupe(overrides: list[str]) -> list[str]:
    """Keep the last override of each key, in the order of the last occurrences."""
    last = {key_of(o): i for i, o in enumerate(overrides)}
    return [o for i, o in enumerate(overrides) if last[key_of(o)] == i]
