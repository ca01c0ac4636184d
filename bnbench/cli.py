"""The `bnbench` command.

    bnbench train  [Hydra overrides and flags]     one run (or a Hydra multirun with -m)
    bnbench study  <name> [overrides]              ablations/<name>.yaml as a multirun, then its report
    bnbench report <name | results dir> [--out D]  (re)build a study's report from its records
    bnbench restore <report folder>                a report's runs back into the results, to finish its launch
    bnbench --version

`bnbench train --help` lists the config groups, `bnbench study --help` the studies.
Input errors (config keys and values, data files, study files) print one line,
`bnbench: error: ...`, and exit with status 2. Set HYDRA_FULL_ERROR=1 for the traceback.
Tab completion: eval "$(bnbench train -sc install=bash)" (zsh: the same after
`autoload -U bashcompinit && bashcompinit`; fish: bnbench train -sc install=fish | source).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import textwrap
from pathlib import Path

from bnbench.resources import CONF_DIR

COMPLETION_FLAGS = ("-sc", "--shell-completion")
# Flags with which Hydra prints something and never calls the task: no need to import it (and
# Lightning and torch with it, ~3 s).
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", *COMPLETION_FLAGS}
# Hydra flags after which there is no single run to check beforehand (information, a multirun,
# or another config), so the preflight steps aside.
NO_PREFLIGHT_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--shell-completion",
                      "-sc", "--resolve", "-m", "--multirun", "--config-path", "-cp", "--config-name", "-cn",
                      "--config-dir", "-cd", "--experimental-rerun"}
# Defaults for every study job, before the user's overrides (which win).
STUDY_DEFAULTS = ["hydra/launcher=local", "run.threads=1", "trainer.enable_progress_bar=false"]


def _one_line(e: BaseException) -> str:
    """The one line that says what is wrong: the user-facing error inside Hydra's and OmegaConf's
    wrappers, with OmegaConf's reason and key, folded onto one line."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    from bnbench.errors import BnbenchError

    chain, seen = [], e
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    inner = next((c for c in chain if isinstance(c, BnbenchError)), None)
    if inner is not None:  # e.g. a DataError raised in a data module that Hydra instantiated
        return _fold(str(inner))
    cause = e.__cause__
    if isinstance(e, OverrideParseException):
        reason = str(e).split("\nSee https://")[0]
        if e.override not in reason:
            reason = f"cannot parse the override {e.override!r}: {reason}"
        return _fold(f"{reason} (overrides are key=value; Hydra's override grammar: "
                     "https://hydra.cc/docs/advanced/override_grammar/basic)")
    if isinstance(e, MissingConfigException):
        missing = re.search(r"Could not find '([^']+)'", str(e))
        if missing and missing.group(1).startswith("recipe/"):
            return _fold(_no_recipe(missing.group(1).split("/", 1)[1]) or str(e))
    if isinstance(e, ConfigCompositionException) and isinstance(cause, OmegaConfBaseException):
        reason = str(cause).splitlines()[0]
        key = getattr(cause, "full_key", None)
        typed = key and key.split(".")[0] not in _untyped()
        if typed and "not in" in reason:  # Hydra's hint (use +key=) does not apply to the schema
            from bnbench.schema import unknown_key

            return _fold(unknown_key(key))
        if "not in struct" in reason:  # an untyped group: Hydra's hint (+key=value) applies
            hint = re.search(r"use (\S+)", str(e))
            return _fold(f"{key} is not in the {key.split('.')[0]} config"
                         + (f"; to add it (an argument of its class), use {hint.group(1)}" if hint else ""))
        where = f" (key {key})" if key and key not in reason else ""
        return _fold(f"{str(e).splitlines()[0].rstrip('.')}: {reason}{where}")
    return _fold(str(e))


def _fold(text: str) -> str:
    """Hydra and OmegaConf errors span lines (options lists, search paths): fold them."""
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep the worker's message
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split("Error: ", 1)[-1] if "Error: " in last else last
    text = text.split("\nConfig search path")[0]
    m = re.search(r"Available options in '([^']+)':(.*)", text, re.S)
    if m:
        options = ", ".join(m.group(2).split())
        text = text[: m.start()].strip() + f" (available: {options})"
    # hydra.utils.instantiate's wrapper: "Error in call to target 'T': TypeError("...")" -> "T: ..."
    call = re.search(r"Error in call to target '([^']+)':\s*\w+\((['\"])(.*)\2\)(\s*full_key: \S+)?", text, re.S)
    if call:
        text = text[: call.start()] + f"{call.group(1)}: {call.group(3)}" + text[call.end():]
    return " ".join(text.split())


def _untyped() -> tuple[str, ...]:
    from bnbench.schema import UNTYPED

    return UNTYPED


def _no_recipe(name: str) -> str | None:
    """Hydra's "Could not find 'recipe/<data>_<model>'" as what it means: no baseline recipe for
    that pair of options, with the pairs that have one."""
    def stems(group: str) -> list[str]:
        return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))

    data, models, recipes = stems("data"), stems("model"), stems("recipe")
    pair = next(((d, name[len(d) + 1:]) for d in data if name.startswith(d + "_") and name[len(d) + 1:] in models),
                None)
    if pair is None:
        return None
    pairs = {}
    for r in recipes:
        for d in data:
            if r.startswith(d + "_") and r[len(d) + 1:] in models:
                pairs.setdefault(d, []).append(r[len(d) + 1:])
    listed = "; ".join(f"data={d} model={'|'.join(ms)}" for d, ms in sorted(pairs.items()))
    fix = (f": pick one with model=, e.g. data={pair[0]} model={pairs[pair[0]][0]}" if pair[0] in pairs
           else f": data={pair[0]} has no recipe with any model")
    default = "; model=mlp is the default" if pair[1] == "mlp" else ""
    return (f"no recipe for data={pair[0]} with model={pair[1]} (conf/recipe/{name}.yaml does not exist{default})"
            f"{fix}. Recipes exist for: {listed}")


def _task(cfg):
    """Hydra's task function: one run (bnbench.train.run). Lightning is imported when a job runs,
    not before: a study's sweeper checks every job's values first (bnbench.preflight). Module-level,
    so that launchers pickle it by reference."""
    from bnbench.train import run

    return run(cfg)


def _hydra_main(informs: bool = False):
    import hydra

    if informs:  # Hydra answers before the task would run: spare `--help`, `--cfg` or a Tab press torch's import
        def run(cfg):
            return None
    else:
        run = _task

    return hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")(run)


def _preflight(jobs: list[list[str]]) -> None:
    """Compose and build each run before Hydra starts any, so that bad input fails with one line
    and nothing written (Hydra would otherwise report it from inside the job). Every job's values
    are checked before the first is built: a bad one is reported before Lightning's import."""
    from hydra import compose, initialize_config_dir

    from bnbench.preflight import check_values, preflight

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="bnbench"):
        cfgs = []
        for overrides in jobs:
            overrides = [a for a in overrides if a not in ("-r", "--run")]  # Hydra's flag for a single run
            _refuse_flags(overrides, "bnbench train --help lists Hydra's flags")
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
            _check_run_dir(cfg)
            check_values(cfg)
            cfgs.append(cfg)
        for cfg in cfgs:
            preflight(cfg)


def _sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs of a `bnbench train -m` multirun under Hydra's basic sweeper: the cartesian
    product of the swept overrides (`a=1,2`, `range(...)`, `choice(...)`), each as an override
    list. Parsed by Hydra's own override parser."""
    import itertools

    from bnbench.overrides import parse

    parsed = [parse(o) for o in overrides]
    if any(o.key_or_group.startswith("hydra/sweeper") or o.key_or_group.startswith("hydra.sweeper") for o in parsed):
        return []  # another sweeper decides the jobs (e.g. the study sweeper checks them itself)
    options = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
               else [o.input_line] for o in parsed]
    return [list(job) for job in itertools.product(*options)]


def _check_run_dir(cfg) -> None:
    """Hydra makes hydra.run.dir before the job starts: a file in its way is a traceback there."""
    from omegaconf import open_dict

    from bnbench.preflight import check_writable

    try:
        run_dir = cfg.hydra.run.dir
    except Exception:  # an interpolation only Hydra's job can resolve: Hydra checks it
        run_dir = None
    with open_dict(cfg):
        del cfg["hydra"]  # as in the job itself
    if run_dir is not None:
        check_writable(run_dir, "hydra.run.dir")


def _refuse_flags(args: list[str], hint: str) -> None:
    from bnbench.errors import ConfigError

    flags = [a for a in args if a.startswith("-")]
    if flags:
        raise ConfigError(f"unknown flag {flags[0]!r}: overrides are key=value ({hint})")


def _run_hydra(argv: list[str], preflight: bool) -> None:
    from bnbench.schema import register_configs

    register_configs()
    flags = {a.split("=", 1)[0] for a in argv}
    if preflight and not flags & NO_PREFLIGHT_FLAGS:
        _preflight([argv])
    elif preflight and flags & {"-m", "--multirun"} and not flags & (NO_PREFLIGHT_FLAGS - {"-m", "--multirun"}):
        _preflight(_sweep_jobs([a for a in argv if a not in ("-m", "--multirun")]))  # as a study does
    sys.argv = ["bnbench", *argv]
    _hydra_main(informs=any(a.split("=", 1)[0] in INFO_FLAGS for a in argv))()


def cmd_train(argv: list[str]) -> int:
    _run_hydra(argv, preflight=True)
    return 0


STUDY_HELP = """usage: bnbench study <name> [overrides ...]

Runs a study (variants x grid x seeds, see README "Studies") as one Hydra multirun, then
writes its report. Jobs run two or more at a time (hydra/launcher=local: joblib on all cores,
one torch thread each; hydra/launcher=slurm on a SLURM cluster).

<name> is looked up, in this order, as:
  1. a study file's path: anything ending in .yaml or .yml, or an existing file
  2. ./ablations/<name>.yaml under the directory you run bnbench from
  3. <name>.yaml among the studies that come with bnbench ({packaged})

Overrides (Hydra's key=value) apply to every job of the study, after the study file's own
overrides, so they win: trainer.max_steps=2000 makes a quick version, hydra.sweeper.seeds=[0]
runs one seed, logger=none turns W&B off. The report lists the overrides a launch ran with.
study.name and study.variant come from the study file (its name, its variants) and are refused.
Every job is composed and built before any runs: a bad override fails the whole study with one
line (exit status 2) and nothing written.

Relaunching: each launch is named by study.launch (default: the time it started, printed in
the log). The same command with study.launch=<launch> finishes an interrupted launch: jobs that
already have a record in it are skipped (a run's id hashes its resolved config, seed and code
version), so only the missing ones run; seeds added to the study file run alone the same way.
Failed and diverged runs have records too: delete a run's folder to run it again. A launch whose
results are gone is restored from its report folder first: bnbench restore reports/<name>.

Where things go:
  records  <paths.results>/<name>/<launch>/<variant>_s<seed>_<run id>/record.json
           (paths.results=results: under the directory you run bnbench from)
  report   <paths.reports>/<name>/report.md   (paths.reports=reports); rebuild it with
           bnbench report <name> [--launch <launch>]
  logs     outputs/<name>/<launch>/<job number>/ (hydra.sweep.dir), W&B's offline runs too

Exit status: 0 when every job ran (diverged runs included), 1 when a job failed (its record
says why), 2 on bad input.

Studies:
{studies}"""


def _study_help() -> str:
    from bnbench.study.spec import ABLATIONS, studies

    rows = []
    for name, path in studies():
        try:
            import yaml

            first = " ".join(str((yaml.safe_load(path.read_text()) or {}).get("description", "")).split())
            first = textwrap.shorten(first, 76, placeholder=" ...")
        except Exception:  # an unreadable study file: `bnbench study <name>` says what is wrong
            first = "(not readable)"
        where = "" if path.parent.resolve() == ABLATIONS.resolve() else f"  [{path}]"
        rows.append(f"  {name:<20} {first}{where}")
    return STUDY_HELP.format(packaged=ABLATIONS, studies="\n".join(rows) or "  (none)")


def cmd_study(argv: list[str]) -> int:
    from bnbench.errors import ConfigError
    from bnbench.study.spec import available

    if argv and argv[0] in ("-h", "--help"):
        print(_study_help())
        return 0
    if not argv or argv[0].startswith("-"):
        what = f"unknown option {argv[0]!r}" if argv else "a study name is needed"
        raise ConfigError(f"bnbench study: {what} (studies: {', '.join(available()) or 'none'}; "
                          "bnbench study --help says more)")
    from bnbench.overrides import value_of
    from bnbench.results.store import USER_OVERRIDES_ENV
    from bnbench.study.spec import launch_of, load_study
    from bnbench.preflight import check_writable

    overrides = argv[1:]
    _refuse_flags(overrides, "bnbench study --help")
    spec = load_study(argv[0])
    _refuse_study_keys(overrides, spec.path)
    launch = launch_of(overrides)  # study.launch=<an earlier launch> relaunches it
    # the report is written after every job has run: check its folder first
    check_writable(str(value_of(overrides, "paths.reports", "reports")), "paths.reports")
    os.environ[USER_OVERRIDES_ENV] = json.dumps(overrides)  # the sweeper keeps them in study.json
    try:
        _run_hydra(["-m", "hydra/sweeper=study", f"hydra.sweeper.study={spec.path}", *STUDY_DEFAULTS,
                    f"study.name={spec.name}", f"study.launch={launch}", *overrides], preflight=False)
    except KeyboardInterrupt:  # Ctrl-C: the launcher's workers got it too and have ended
        again = finish_command(argv[0], overrides, launch)
        queued = "slurm" in str(value_of(overrides, "hydra/launcher", ""))  # its jobs outlive this process
        slurm = "; its SLURM jobs go on: let them end or scancel them first" if queued else ""
        print(f"bnbench: interrupted; to finish the launch (its recorded runs are kept, the others resume from "
              f"their last checkpoints, if they wrote one{slurm}): {again}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it
    finally:
        os.environ.pop(USER_OVERRIDES_ENV, None)
    cmd_report([spec.name, "--launch", launch, *_paths_args(overrides)])
    return _failed_jobs(spec.name, launch, overrides)


def _refuse_study_keys(overrides: list[str], study: Path) -> None:
    """`study.name` and `study.variant` come from the study file: overridden, the records would go
    where the report does not look (another name) or every variant would share one name."""
    from bnbench.errors import ConfigError
    from bnbench.overrides import key_of

    for o in overrides:
        if key_of(o) == "study.name":
            raise ConfigError(f"{o}: a study's name is its file's ({study}); to run it under another name, "
                              f"copy the file to ./ablations/<name>.yaml")
        if key_of(o) == "study.variant":
            raise ConfigError(f"{o}: a study's variants are the `variants:` of its file; "
                              f"bnbench study sets study.variant for each job")


def _failed_jobs(study: str, launch: str, overrides: list[str]) -> int:
    """1 if any job of the launch failed (its record says so, or it left none), else 0.
    Diverged runs are outcomes, not failures."""
    from bnbench.overrides import value_of
    from bnbench.results.store import STUDY, read_json

    results = str(value_of(overrides, "paths.results", "results"))
    meta = read_json(Path(results) / study / launch / STUDY)
    if meta.get("failed_jobs"):
        print(f"bnbench: {len(meta['failed_jobs'])} of {len(meta['jobs'])} jobs failed; see the report and "
              f"{meta['sweep_dir']}", file=sys.stderr)
        return 1
    return 0


def _paths_args(overrides: list[str]) -> list[str]:
    """Carry paths.results / paths.reports overrides from a study to its report."""
    from bnbench.overrides import value_of

    out = []
    for key, flag in (("paths.results", "--results"), ("paths.reports", "--out-root")):
        value = value_of(overrides, key)
        if value is not None:
            out += [flag, str(value)]
    return out


def cmd_report(argv: list[str]) -> int:
    from bnbench.report.build import build_report
    from bnbench.report.wandb_summary import log_report_run
    from bnbench.results.archive import has_archive
    from bnbench.results.store import latest_launch
    from bnbench.errors import ConfigError

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, as every other input error
            raise ConfigError(f"bnbench report: {message} (see bnbench report --help)")

    p = Parser(prog="bnbench report", description="(Re)build a study's report from its records (or a "
               "`bnbench train -m` sweep's: its variants are the keys swept).")
    p.add_argument("target", help="a study name (its latest launch under --results), a launch directory "
                   "(<results>/<study>/<launch>, also of `bnbench train -m`) or a report folder to rebuild")
    p.add_argument("--results", default="results", help="results root (paths.results); default: results")
    p.add_argument("--launch", help="a launch name under <results>/<study>/ (default: the latest)")
    p.add_argument("--out", help="output directory (default: <out-root>/<study>; a `bnbench train -m` "
                   "sweep's: <out-root>/<study>/<launch>; a report folder: itself)")
    p.add_argument("--out-root", default="reports", help="reports root (paths.reports); default: reports")
    args = p.parse_args(argv)
    target = Path(args.target)
    if target.is_dir():
        launch_dir = target
    elif args.launch:
        launch_dir = Path(args.results) / args.target / args.launch
    else:
        root = Path(args.results) / args.target
        # a study's launches have a study.json; else (`bnbench train -m`, `adhoc`) the latest with records
        launch_dir = latest_launch(Path(args.results), args.target) or max(
            (d for d in root.glob("*") if d.is_dir() and any(d.glob("*/record.json"))), default=None)
        if launch_dir is None:
            raise ConfigError(f"no results for study {args.target!r} under {Path(args.results).resolve()}")
    if not launch_dir.is_dir():
        raise ConfigError(f"results directory not found: {launch_dir}")
    out = build_report(launch_dir, Path(args.out) if args.out else None, Path(args.out_root))
    print(f"report written: {out}")
    if not has_archive(launch_dir):  # a report rebuilt from its own records is not a new one: no W&B run
        log_report_run(out.parent)  # its tables as a W&B run in the study's group (logger=none: nothing)
    return 0


def finish_command(study: str, overrides: list[str], launch: str, extra: list[str] = ()) -> str:
    """`bnbench study <study> <overrides...> study.launch=<launch>`, quoted for the shell: the
    command that finishes a launch (its own study.launch / study.name overrides left out)."""
    from bnbench.overrides import key_of

    user = [o for o in overrides if key_of(o) not in ("study.launch", "study.name")]
    return shlex.join(["bnbench", "study", study, *user, *extra, f"study.launch={launch}"])


def restore_command(meta: dict, results: str) -> str:
    """The `bnbench study` command that finishes a restored launch: the study (its name when its
    file is one of ablations/, else the file), the launch's own overrides, the launch."""
    spec_path = Path(meta.get("spec_path") or meta["study"])
    study = meta["study"] if spec_path.parent.name == "ablations" else str(spec_path)
    extra = [] if results == "results" else [f"paths.results={results}"]
    return finish_command(study, meta.get("user_overrides") or [], meta["launch"], extra)


def cmd_restore(argv: list[str]) -> int:
    from bnbench.errors import ConfigError
    from bnbench.results.archive import restore_launch
    from bnbench.results.env import git_state

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise ConfigError(f"bnbench restore: {message} (see bnbench restore --help)")

    p = Parser(prog="bnbench restore", description="Write a study report's runs (its records.jsonl.gz) back "
               "into the results store as their launch, so the launch can be finished elsewhere or later: "
               "`bnbench study <name> study.launch=<launch>`, from a checkout of the commit the runs were made "
               "at, runs only the jobs without a record. Runs already in the store are left as they are.")
    p.add_argument("folder", help="a report folder with its records (e.g. reports/modifications)")
    p.add_argument("--results", default="results", help="results root (paths.results); default: results")
    args = p.parse_args(argv)
    done = restore_launch(Path(args.folder), Path(args.results))
    print(f"restored {done.written} run(s) into {done.launch_dir}" + (f" ({done.kept} already there)" if done.kept else ""))
    here, made_at = str(git_state()["sha"]), ", ".join(c[:10] for c in done.commits)
    if done.commits != [here]:
        print(f"its runs were made at commit {made_at}, this checkout is {here[:10]}: finish the launch from a "
              f"checkout of {made_at} (a launch never mixes commits; a run's id includes its commit)")
    print(f"to finish it: {restore_command(done.meta, args.results)}")
    return 0


COMMANDS = {"train": cmd_train, "study": cmd_study, "report": cmd_report, "restore": cmd_restore}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bnbench")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from bnbench import __version__

        return __version__


def _completion(request: str) -> int:
    """Hydra's shell completion for `bnbench`. `install=<shell>` prints Hydra's script for the
    command `bnbench`; the script calls `bnbench -sc query=<shell>` with the command line in
    COMP_LINE. Completed here: the command word and study names; the overrides of
    `bnbench train ...` and `bnbench study <name> ...` by Hydra, shown the line without them."""
    action, _, shell = request.partition("=")
    if action != "query":
        _run_hydra([COMPLETION_FLAGS[0], request], preflight=False)
        return 0
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    new_word = not line or line[-1].isspace()
    if len(words) < (1 if new_word else 2):
        return 0
    done, current = (words[1:], "") if new_word else (words[1:-1], words[-1])
    sep = "\n" if shell == "fish" else " "
    if not done:
        print(sep.join(w for w in [*COMMANDS, "--help", "--version"] if w.startswith(current)))
        return 0
    if done[0] == "study" and len(done) == 1:
        from bnbench.study.spec import available

        print(sep.join(n for n in available() if n.startswith(current)))
        return 0
    if done[0] in ("train", "study"):
        overrides = done[1:] if done[0] == "train" else done[2:]
        os.environ["COMP_LINE"] = " ".join([words[0], *overrides]) + " " + current
        _run_hydra([COMPLETION_FLAGS[0], request], preflight=False)
    return 0  # bnbench report: the shell's file names


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if argv[0] == "--version":
        print(f"bnbench {_version()}")
        return 0
    completion = None
    if argv[0] in COMPLETION_FLAGS:  # what Hydra's completion script runs: bnbench -sc query=bash
        completion = argv[1:2]
    elif argv[0] in ("train", "study") and len(argv) > 1 and argv[1] in COMPLETION_FLAGS:
        completion = argv[2:3]
    if argv[0] not in COMMANDS and completion is None:
        print(f"bnbench: error: unknown command {argv[0]!r} (commands: {', '.join(COMMANDS)}; see bnbench --help)",
              file=sys.stderr)
        return 2
    # Hydra's convention: only HYDRA_FULL_ERROR=1 shows the traceback
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us, to print them as one line
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from bnbench.errors import BnbenchError, ConfigError

    try:
        if completion is not None:
            if not completion or "=" not in completion[0]:
                raise ConfigError(f"{COMPLETION_FLAGS[0]} needs install=<shell>, uninstall=<shell> or query=<shell> "
                                  "(shells: bash, zsh, fish), e.g. eval \"$(bnbench train -sc install=bash)\"")
            return _completion(completion[0])
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
