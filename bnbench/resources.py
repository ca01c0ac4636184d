"""Where bnbench's configs (`conf/`) and its own studies (`ablations/`) are.

In a checkout, and in an editable install of one (`pip install -e .`), they are the checkout's
top-level `conf/` and `ablations/`, read in place. A wheel (`pip install .`, or of a built
`.whl`) carries them inside the package as `bnbench/conf/` and `bnbench/ablations/`
(pyproject.toml maps them there). Everything that looks them up asks here.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def source_tree() -> Path | None:
    """The checkout bnbench runs from (a clone, or an editable install of one), or None when
    it runs installed from a wheel: a wheel's package sits in site-packages, next to no
    pyproject.toml. The checkout is also where bnbench reads its code version (git)."""
    root = PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() and (root / "conf").is_dir() else None


def _folder(name: str) -> Path:
    return (source_tree() or PACKAGE) / name


CONF_DIR = _folder("conf")  # Hydra's primary config directory (`train.yaml` and the groups)
ABLATIONS = _folder("ablations")  # the studies that come with bnbench (`bnbench study <name>`)
