"""bnbench installed as a package: the wheel built from this checkout, installed into a fresh
virtualenv, run from a folder outside the checkout, without PYTHONPATH. It must carry its own
configs and studies (bnbench/resources.py) and run a real study.

The fresh virtualenv reuses this one's dependencies (torch, Lightning, Hydra, W&B) through a
.pth file instead of downloading them, and gets only the wheel itself; nothing is fetched.
Building needs the build backend, hatchling, here (the `dev` extra has it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import make_idx_dataset, records_under

REPO = Path(__file__).resolve().parents[1]


def sh(*args, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def site_packages() -> list[str]:
    """The folders this interpreter imports installed packages from (its site-packages, and any
    a .pth line of its own added: an environment that reuses another's, as below), not the
    checkout or the tests."""
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], *sys.path])
    return [p for p in paths if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """{wheel, venv, site, bin, env}: the wheel, and the fresh virtualenv it is installed in."""
    pytest.importorskip("hatchling", reason="the build backend (pip install -e '.[dev]', or make setup)")
    tmp = tmp_path_factory.mktemp("package")
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
       "-w", tmp / "dist", REPO, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("bnbench-*.whl")
    venv = tmp / "venv"
    sh(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    site = Path(sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).stdout.strip())
    # the fresh environment sees this one's packages (pip included), after its own: a .pth line
    # appends to sys.path ...
    (site / "zz_reuse_dependencies.pth").write_text("".join(f"{p}\n" for p in site_packages()))
    # ... and gets the wheel alone (--ignore-installed: this environment's bnbench is not its to replace)
    sh(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheel, cwd=tmp)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "HYDRA_FULL_ERROR")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONNOUSERSITE="1",
               WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    return {"wheel": wheel, "venv": venv, "site": site, "bin": venv / "bin" / "bnbench", "env": env}


@pytest.fixture()
def elsewhere(tmp_path) -> Path:
    """A working directory outside the checkout."""
    assert REPO not in tmp_path.resolve().parents
    return tmp_path


def test_the_wheel_carries_the_configs_and_the_studies(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for folder, packaged in (("conf", "bnbench/conf"), ("ablations", "bnbench/ablations")):
        files = {p.relative_to(REPO / folder).as_posix() for p in (REPO / folder).rglob("*.yaml")}
        assert files and {f"{packaged}/{f}" for f in files} <= names, folder
    assert "hydra_plugins/bnbench_sweeper/study_sweeper.py" in names
    assert "bnbench/nn/csrc/batchnorm.cpp" in names  # kernel="cpp" builds it on first use
    assert not [n for n in names if n.startswith(("conf/", "ablations/", "tests/", "reports/"))]


def test_the_installed_wheel_runs_not_the_checkout(installed, elsewhere):
    probe = ("import json, bnbench, hydra_plugins.bnbench_sweeper as sweeper\n"
             "from bnbench.resources import ABLATIONS, CONF_DIR, source_tree\n"
             "from bnbench.results.env import git_state\n"
             "print(json.dumps({'bnbench': bnbench.__file__, 'sweeper': sweeper.__file__, 'conf': str(CONF_DIR),"
             " 'ablations': str(ABLATIONS), 'tree': str(source_tree()), 'git': git_state()}))")
    seen = json.loads(sh(installed["venv"] / "bin" / "python", "-c", probe, cwd=elsewhere,
                         env=installed["env"]).stdout)
    site = installed["site"].resolve()
    for key in ("bnbench", "sweeper", "conf", "ablations"):
        assert Path(seen[key]).resolve().is_relative_to(site), (key, seen[key])
    assert Path(seen["conf"]) == site / "bnbench" / "conf" and (Path(seen["conf"]) / "train.yaml").is_file()
    assert Path(seen["ablations"]) == site / "bnbench" / "ablations"
    assert seen["tree"] == "None" and seen["git"] == {"sha": None, "dirty": None}


def test_version_and_the_composed_config(installed, elsewhere):
    run = installed["bin"]
    out = sh(run, "--version", cwd=elsewhere, env=installed["env"]).stdout
    assert out.strip() == f"bnbench {version('bnbench')}"
    job = sh(run, "train", "--cfg", "job", cwd=elsewhere, env=installed["env"]).stdout
    assert "recipe:" in job and "root: /usr/share/datasets/fashion-mnist" in job
    # Hydra read its configs from the wheel's copy, not from the checkout's conf/
    paths = sh(run, "train", "--info", "searchpath", cwd=elsewhere, env=installed["env"]).stdout
    assert f"file://{installed['site'] / 'bnbench' / 'conf'}" in paths, paths
    assert str(REPO) not in paths
    assert not list(elsewhere.iterdir())  # --cfg and --info write nothing


def test_a_study_runs_from_the_installed_package(installed, elsewhere):
    """`bnbench study` finds ./ablations/<name>.yaml in the directory it runs from and lists the
    studies of the wheel; the study runs through the wheel's sweeper, with W&B offline."""
    data = make_idx_dataset(elsewhere / "data", n_train=120, n_test=40)
    (elsewhere / "ablations").mkdir()
    (elsewhere / "ablations" / "tiny_pkg.yaml").write_text(
        "description: tiny, from the installed package\nseeds: [0]\nvariants:\n  plain: [experiment=mnist_baseline]\n")
    run, env = installed["bin"], installed["env"]
    listed = sh(run, "study", "--help", cwd=elsewhere, env=env).stdout
    assert str(installed["site"] / "bnbench" / "ablations") in listed
    assert "paper_mnist" in listed and "tiny, from the installed package" in listed
    sh(run, "study", "tiny_pkg", "data=mnist", f"data.root={data}", "trainer.max_steps=4", "run.eval_every=2",
       "hydra.launcher.n_jobs=1", cwd=elsewhere, env=env)
    (path,) = records_under(elsewhere / "results" / "tiny_pkg")
    record = json.loads(path.read_text())
    assert record["status"] == "completed" and record["env"]["git"] == {"sha": None, "dirty": None}
    # no commit to name the code: the wheel's version and a hash of its files do (part of the run id)
    built, _, files = record["env"]["code"].partition("+")
    assert built == record["env"]["packages"]["bnbench"] and len(files) == 12
    assert record["env"]["packages"]["bnbench"] == version("bnbench")
    assert (elsewhere / "reports" / "tiny_pkg" / "report.md").is_file()
    assert list((elsewhere / "outputs").rglob("offline-run-*/*.wandb"))


def test_code_version_is_only_a_checkouts_own(tmp_path):
    """A record's git state is the checkout's that bnbench runs from: none for a wheel
    (source_tree() is None there) and none for a source tree that is no clone itself, even
    inside some other clone."""
    from bnbench.resources import source_tree
    from bnbench.results.env import git_state

    assert source_tree() == REPO  # these tests run from the checkout
    unknown = {"sha": None, "dirty": None}
    outer = tmp_path / "other_project"
    (outer / "vendored_bnbench").mkdir(parents=True)
    (outer / "code.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(outer), *args], check=True, capture_output=True)
    assert git_state(outer)["sha"] is not None
    assert git_state(outer / "vendored_bnbench") == unknown
    assert git_state(None) == unknown
    assert git_state(tmp_path / "not_a_clone") == unknown
