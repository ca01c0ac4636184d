"""The `bnbench` command.

    bnbench train  [Hydra overrides and flags]     one run (or a Hydra multirun with -m)
    bnbench study  <name> [overrides]              ablations/<name>.yaml as a multirun, then its report
    bnbench report <name | results dir> [--out D]  (re)build a study's report from its records

Input errors (config keys and values, data files, study files) print one line,
`bnbench: error: ...`, and exit with status 2. Set HYDRA_FULL_ERROR=1 for the traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# Hydra flags after which there is no single run to check beforehand (information, a multirun,
# or another config), so the preflight steps aside.
NO_PREFLIGHT_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--shell-completion",
                      "-sc", "--resolve", "-m", "--multirun", "--config-path", "-cp", "--config-name", "-cn",
                      "--config-dir", "-cd", "--experimental-rerun"}
# Defaults for every study job, before the user's overrides (which win).
STUDY_DEFAULTS = ["hydra/launcher=local", "run.threads=1", "trainer.enable_progress_bar=false"]


def _one_line(e: BaseException) -> str:
    """Hydra and OmegaConf errors span lines (options lists, search paths): fold them."""
    text = str(e)
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep the worker's message
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split("Error: ", 1)[-1] if "Error: " in last else last
    text = text.split("\nConfig search path")[0]
    m = re.search(r"Available options in '([^']+)':(.*)", text, re.S)
    if m:
        options = ", ".join(m.group(2).split())
        text = text[: m.start()].strip() + f" (available: {options})"
    return " ".join(text.split())


def _hydra_main():
    import hydra

    from bnbench.train import run

    return hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")(run)


def _preflight(overrides: list[str]) -> None:
    """Compose and build a single run before Hydra starts it, so that bad input fails with one
    line and nothing written (Hydra would otherwise report it from inside the job)."""
    from hydra import compose, initialize_config_dir

    from bnbench.train import build

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="bnbench"):
        build(compose("train", overrides=overrides))


def _run_hydra(argv: list[str], preflight: bool) -> None:
    from bnbench.schema import register_configs

    register_configs()
    if preflight and not {a.split("=", 1)[0] for a in argv} & NO_PREFLIGHT_FLAGS:
        _preflight(argv)
    sys.argv = ["bnbench", *argv]
    _hydra_main()()


def cmd_train(argv: list[str]) -> int:
    _run_hydra(argv, preflight=True)
    return 0


def cmd_study(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        from bnbench.study.spec import available

        print("usage: bnbench study <name> [overrides]\nstudies: " + ", ".join(available()))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from bnbench.study.spec import launch_of, load_study

    spec = load_study(argv[0])
    overrides = argv[1:]
    launch = launch_of(overrides)  # study.launch=<an earlier launch> relaunches it
    _run_hydra(["-m", "hydra/sweeper=study", f"hydra.sweeper.study={spec.path}", *STUDY_DEFAULTS,
                f"study.name={spec.name}", f"study.launch={launch}", *overrides], preflight=False)
    cmd_report([spec.name, "--launch", launch, *_paths_args(overrides)])
    return _failed_jobs(spec.name, launch, overrides)


def _failed_jobs(study: str, launch: str, overrides: list[str]) -> int:
    """1 if any job of the launch failed (its record says so, or it left none), else 0.
    Diverged runs are outcomes, not failures."""
    from bnbench.results.store import STUDY, read_json

    results = next((o.split("=", 1)[1] for o in overrides if o.startswith("paths.results=")), "results")
    meta = read_json(Path(results) / study / launch / STUDY)
    if meta.get("failed_jobs"):
        print(f"bnbench: {len(meta['failed_jobs'])} of {len(meta['jobs'])} jobs failed; see the report and "
              f"{meta['sweep_dir']}", file=sys.stderr)
        return 1
    return 0


def _paths_args(overrides: list[str]) -> list[str]:
    """Carry paths.results / paths.reports overrides from a study to its report."""
    out = []
    for o in overrides:
        for key, flag in (("paths.results=", "--results"), ("paths.reports=", "--out-root")):
            if o.startswith(key):
                out += [flag, o[len(key):]]
    return out


def cmd_report(argv: list[str]) -> int:
    from bnbench.report.build import build_report
    from bnbench.results.store import latest_launch
    from bnbench.errors import ConfigError

    p = argparse.ArgumentParser(prog="bnbench report", description="(Re)build a study's report from its records.")
    p.add_argument("target", help="a study name (its latest launch under --results) or a launch directory")
    p.add_argument("--results", default="results", help="results root (paths.results); default: results")
    p.add_argument("--launch", help="a launch name under <results>/<study>/ (default: the latest)")
    p.add_argument("--out", help="output directory (default: <out-root>/<study>)")
    p.add_argument("--out-root", default="reports", help="reports root (paths.reports); default: reports")
    args = p.parse_args(argv)
    target = Path(args.target)
    if target.is_dir():
        launch_dir = target
    elif args.launch:
        launch_dir = Path(args.results) / args.target / args.launch
    else:
        launch_dir = latest_launch(Path(args.results), args.target)
        if launch_dir is None:
            raise ConfigError(f"no results for study {args.target!r} under {Path(args.results).resolve()}")
    if not launch_dir.is_dir():
        raise ConfigError(f"results directory not found: {launch_dir}")
    out = build_report(launch_dir, Path(args.out) if args.out else None, Path(args.out_root))
    print(f"report written: {out}")
    return 0


COMMANDS = {"train": cmd_train, "study": cmd_study, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if argv[0] not in COMMANDS:
        print(f"bnbench: error: unknown command {argv[0]!r} (commands: {', '.join(COMMANDS)}; see bnbench --help)",
              file=sys.stderr)
        return 2
    full_error = bool(os.environ.get("HYDRA_FULL_ERROR"))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us, to print them as one line
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from bnbench.errors import BnbenchError

    try:
        return COMMANDS[argv[0]](argv[1:])
    except (BnbenchError, HydraException, OmegaConfBaseException) as e:
        if full_error:
            raise
        print(f"bnbench: error: {_one_line(e)}", file=sys.stderr)
        return 2


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
