"""Bad input: a one-line error naming the problem, exit status 2, nothing written. And the
command itself: --version, study --help, studies in ./ablations, tab completion."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from bnbench.data.idx import write_idx
from conftest import make_idx_dataset, records_under, run_cli


def assert_one_line_error(proc, *must_mention: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("bnbench: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for text in must_mention:
        assert text in errors[0], (text, errors[0])


def assert_nothing_written(where: Path) -> None:
    """No record, and none of the folders a run or study makes (outputs/, results/, reports/)."""
    assert not records_under(where)
    for folder in ("outputs", "results", "reports"):
        assert not (where / folder).exists(), folder


@pytest.fixture()
def broken_data(tmp_path) -> Path:
    root = make_idx_dataset(tmp_path / "data", n_train=60, n_test=20)
    return root


CASES = {
    "missing_file": (lambda root: (root / "t10k-labels-idx1-ubyte.gz").unlink(),
                     ["t10k-labels-idx1-ubyte", "data.root=", "apt-get install dataset-fashion-mnist"]),
    "corrupt_file": (lambda root: (root / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not gzip"),
                     ["train-images-idx3-ubyte.gz"]),
    "truncated_file": (lambda root: write_idx(root / "train-labels-idx1-ubyte.gz",
                                              __import__("torch").zeros(7, dtype=__import__("torch").uint8)),
                       ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_data_file(case, broken_data, tmp_path):
    damage, mentions = CASES[case]
    damage(broken_data)
    proc = run_cli("train", f"data.root={broken_data}", "logger=none", "trainer.max_steps=5", cwd=tmp_path)
    assert_one_line_error(proc, *mentions)
    assert_nothing_written(tmp_path)


def test_mnist_with_a_corrupt_file_is_one_clean_line(broken_data, tmp_path):
    """The data file is read before Hydra starts the job: one line (the DataError's own), no outputs/."""
    (broken_data / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not gzip")
    proc = run_cli("train", "data=mnist", f"data.root={broken_data}", "logger=none", cwd=tmp_path)
    assert_one_line_error(proc, "cannot read data file", "train-images-idx3-ubyte.gz")
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("root", [None, "missing"])
def test_mnist_without_its_files_says_where_to_put_them(root, tmp_path):
    overrides = [] if root is None else [f"data.root={tmp_path / root}"]
    proc = run_cli("train", "data=mnist", "logger=none", *overrides, cwd=tmp_path)
    assert_one_line_error(proc, "data=mnist needs data.root" if root is None else f"{tmp_path / root}")
    assert "Error in call to target" not in proc.stderr and "DataError(" not in proc.stderr
    assert_nothing_written(tmp_path)


def test_imagenet_without_a_model_names_the_pair_and_the_recipes_there_are(tmp_path):
    proc = run_cli("train", "data=imagenet", f"data.root={tmp_path / 'missing'}", "logger=none", cwd=tmp_path)
    assert_one_line_error(proc, "no recipe for data=imagenet with model=mlp", "recipe/imagenet_mlp",
                          "model=bn_inception", "data=fashion_mnist model=inception_mini|mlp")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("overrides,mentions", [
    (["no_such_key=1"], ["no_such_key"]),
    (["recipe.no_such_key=1"], ["no_such_key"]),
    (["norm=layer"], ["norm/layer", "available: batch, none"]),
    (["experiment=bn_x500"], ["experiment/bn_x500"]),
    (["recipe.lr=-0.1"], ["recipe.lr", "-0.1"]),
    (["recipe.lr=0"], ["recipe.lr", "> 0"]),
    (["lr.scale=0"], ["lr.scale"]),
    (["norm=batch", "recipe.batch_size=1"], ["norm=batch", "data.batch_size=1", "over 1 example(s)"]),
    (["model=bn_inception"], ["recipe/fashion_mnist_bn_inception"]),
    (["trainer.max_steps=-5"], ["trainer", "max_steps", "-5"]),
    (["data.batch_size=0"], ["data.batch_size", "got 0"]),
    # numpy's seed range, checked by the schema (not a traceback from seed_everything)
    (["seed=-1"], ["seed", "[0, 4294967295]", "got -1"]),
    (["seed=4294967296"], ["seed", "got 4294967296"]),
    # `+key=` outside the typed schema
    (["+recipe.typo=1"], ["recipe.typo is not a config key", "recipe's keys: batch_size"]),
    (["+run.foo=1"], ["run.foo is not a config key"]),
    (["+norm.bar=2"], ["norm.bar is not a config key"]),
    # ... and in the untyped groups, arguments of their classes only
    (["+data.typo=1"], ["data.typo is not an argument of bnbench.data.in_memory.IDXDataModule"]),
    (["+trainer.gradiant_clip_val=1"], ["trainer.gradiant_clip_val", "did you mean trainer.gradient_clip_val"]),
    (["+model.dropout=0.3"], ["model.dropout is set by bnbench", "recipe.dropout"]),
    (["data.num_shards=abc"], ["data.num_shards='abc' is not an integer"]),
    # closed sets (Enums in the schema), whatever the norm kind
    (["norm.impl=foo"], ["norm.impl=foo", "Invalid value 'foo'", "[torch, bnbench]"]),
    (["norm.inference=median"], ["norm.inference=median", "[ema, population]"]),
    (["shuffle.mode=random"], ["shuffle.mode=random", "[shard, within_shard, global]"]),
    (["logger.mode=foo"], ["logger.mode=foo", "[offline, online, disabled]"]),
    # OmegaConf's reason for a value of the wrong type, with the key
    (["recipe.lr=abc"], ["recipe.lr=abc", "Value 'abc' of type 'str' could not be converted to Float"]),
    (["seed=abc"], ["seed=abc", "could not be converted to Integer", "(key seed)"]),
    (["recipe.batch_size=1.5"], ["recipe.batch_size=1.5", "could not be converted to Integer"]),
    # ranges the types cannot say
    (["run.eval_every=0"], ["run.eval_every must be >= 1", "got 0"]),
    (["run.check_every=0"], ["run.check_every must be >= 1"]),
    (["run.threads=0"], ["run.threads must be >= 1"]),
    (["run.steps_per_batch=0"], ["run.steps_per_batch must be >= 1"]),
    (["run.steps_per_batch=3", "trainer.max_steps=100", "run.eval_every=50"],
     ["run.steps_per_batch=3 cannot be taken", "trainer.max_steps=100 is not a multiple of it"]),
    # values Lightning or a module would divide by, or index, mid-run (tracebacks before)
    (["data.eval_batch_size=0"], ["data.eval_batch_size must be >= 1"]),
    (["trainer.val_check_interval=0"], ["trainer.val_check_interval", "got 0"]),
    (["trainer.log_every_n_steps=0"], ["trainer.log_every_n_steps must be >= 1"]),
    (["model.hidden=[]"], ["model.hidden", "got []"]),
    (["~data.root"], ["data.root is required by bnbench.data.in_memory.IDXDataModule"]),
    (["study.launch=a/b"], ["study.launch='a/b' must be a folder name"]),
    (["trainer.max_epochs=3"], ["trainer.max_epochs is not in the trainer config", "use +trainer.max_epochs=3"]),
    # not an override at all
    (["--badflag"], ["unknown flag '--badflag'"]),
    (["norm=["], ["cannot parse the override 'norm=['"]),
])
def test_bad_config(overrides, mentions, tiny_data, tmp_path):
    proc = run_cli("train", f"data.root={tiny_data}", "logger=none", *overrides, cwd=tmp_path)
    assert_one_line_error(proc, *mentions)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("sweep, mentions", [
    (["seed=0,-1"], ["seed must be in [0, 4294967295]", "got -1"]),
    (["recipe.lr=0.1,abc"], ["recipe.lr=abc", "could not be converted to Float"]),
    (["norm=none,batch", "recipe.batch_size=range(1,3)"], ["normalizes over 1 example"]),
])
def test_a_multirun_with_one_bad_job_fails_before_any_job_runs(sweep, mentions, tiny_data, tmp_path):
    """`bnbench train -m`: every job of Hydra's basic sweep is checked first, as a study's are."""
    proc = run_cli("train", "-m", f"data.root={tiny_data}", "logger=none", "trainer.max_steps=5", *sweep, cwd=tmp_path)
    assert_one_line_error(proc, *mentions)
    assert_nothing_written(tmp_path)


def test_an_unknown_wandb_mode_from_the_environment(tiny_data, tmp_path):
    proc = run_cli("train", f"data.root={tiny_data}", cwd=tmp_path, env={"WANDB_MODE": "onlin"})
    assert_one_line_error(proc, "WANDB_MODE='onlin'", "offline, online, disabled")
    assert_nothing_written(tmp_path)


def test_an_output_folder_in_the_way_of_a_file(tiny_data, tmp_path):
    """Hydra makes hydra.run.dir before the job: checked before, one line, not Hydra's traceback."""
    (tmp_path / "taken").write_text("a file\n")
    proc = run_cli("train", f"data.root={tiny_data}", "logger=none", f"hydra.run.dir={tmp_path / 'taken' / 'run'}",
                   cwd=tmp_path)
    assert_one_line_error(proc, "hydra.run.dir=", "is not a directory")
    assert_nothing_written(tmp_path)


def test_trainer_arguments_can_still_be_added(tiny_data, tmp_path):
    proc = run_cli("train", f"data.root={tiny_data}", "logger=none", "trainer.max_steps=4", "run.eval_every=2",
                   "+trainer.gradient_clip_val=0.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = records_under(tmp_path / "results")
    assert '"gradient_clip_val": 0.5' in path.read_text()


@pytest.mark.parametrize("value,traceback", [("0", False), ("", False), ("1", True)])
def test_only_hydra_full_error_1_shows_the_traceback(value, traceback, tmp_path):
    proc = run_cli("train", "seed=-1", cwd=tmp_path, env={"HYDRA_FULL_ERROR": value})
    if traceback:
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError: seed" in proc.stderr
    else:
        assert_one_line_error(proc, "seed must be in")
    assert_nothing_written(tmp_path)


def test_unknown_study(tmp_path):
    proc = run_cli("study", "no_such_study", cwd=tmp_path)
    assert_one_line_error(proc, "no_such_study", "paper_mnist")


@pytest.mark.parametrize("override,mention", [("recipe.lr=-1", "recipe.lr"), ("+recipe.typo=1", "recipe.typo"),
                                               ("seed=-1", "seed must be in"),
                                               # set from the study file: records would go where the report does not look
                                               ("study.name=mine", "study.name=mine: a study's name is its file's"),
                                               ("+study.variant=a", "bnbench study sets study.variant for each job")])
def test_study_with_a_bad_override_fails_before_running_anything(override, mention, tiny_data, tmp_path):
    proc = run_cli("study", "paper_mnist", f"data.root={tiny_data}", override, "logger=none", cwd=tmp_path)
    assert_one_line_error(proc, mention)
    assert_nothing_written(tmp_path)


def test_study_whose_reports_folder_is_a_file_fails_before_running_anything(tiny_data, tmp_path):
    (tmp_path / "taken").write_text("a file\n")
    proc = run_cli("study", "paper_mnist", f"data.root={tiny_data}", f"paths.reports={tmp_path / 'taken'}",
                   "logger=none", cwd=tmp_path)
    assert_one_line_error(proc, "paths.reports", "taken")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("args,mention", [([], "a study name is needed"), (["paper_mnist", "--fast"], "'--fast'")])
def test_study_without_a_name_or_with_a_flag(args, mention, tmp_path):
    assert_one_line_error(run_cli("study", *args, cwd=tmp_path), mention)


def test_report_without_results(tmp_path):
    proc = run_cli("report", "paper_mnist", cwd=tmp_path)
    assert_one_line_error(proc, "no results for study 'paper_mnist'")


def test_report_with_bad_arguments_is_one_line(tmp_path):
    assert_one_line_error(run_cli("report", cwd=tmp_path), "bnbench report:", "target")


def test_unknown_command(tmp_path):
    proc = run_cli("trian", cwd=tmp_path)
    assert_one_line_error(proc, "unknown command 'trian'", "train, study, report")


# --- the command: --version, study --help, ./ablations, tab completion ------------------------


def test_version(tmp_path):
    proc = run_cli("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"bnbench {version('bnbench')}"


def test_study_help_explains_overrides_relaunching_and_lists_the_studies(tmp_path):
    (tmp_path / "ablations").mkdir()
    (tmp_path / "ablations" / "mine.yaml").write_text("description: my own study\nseeds: [0]\n"
                                                      "variants:\n  a: [experiment=mnist_baseline]\n")
    proc = run_cli("study", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for text in ("apply to every job", "study.launch=<launch>", "skipped", "./ablations/<name>.yaml",
                 "<paths.results>/<name>/<launch>/", "<paths.reports>/<name>/report.md", "paper_mnist",
                 "paper_table", "my own study", str(tmp_path / "ablations" / "mine.yaml")):
        assert text in proc.stdout, text
    # the search order is the help's: a path, ./ablations, then bnbench's own
    assert proc.stdout.index("./ablations/<name>.yaml") < proc.stdout.index("studies that come with bnbench")


def test_a_study_in_the_working_directorys_ablations_is_found_by_name(tiny_data, tmp_path):
    (tmp_path / "ablations").mkdir()
    (tmp_path / "ablations" / "tiny_local.yaml").write_text(
        "description: tiny\nseeds: [0]\nvariants:\n  plain: [experiment=mnist_baseline]\n")
    proc = run_cli("study", "tiny_local", f"data.root={tiny_data}", "logger=none", "trainer.max_steps=4",
                   "run.eval_every=2", "hydra.launcher.n_jobs=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = records_under(tmp_path / "results" / "tiny_local")
    assert (tmp_path / "reports" / "tiny_local" / "report.md").exists()


def test_tab_completion_script_works_in_bash(tmp_path):
    """Hydra's bash script, installed by `bnbench train -sc install=bash`, run by bash itself:
    its completion function calls `bnbench -sc query=bash` with COMP_LINE set."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bnbench").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bnbench.cli "$@"\n')
    (bin_dir / "bnbench").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONWARNINGS": "ignore"}
    script = subprocess.run(["bnbench", "train", "-sc", "install=bash"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert script.returncode == 0, script.stderr[-2000:]
    assert "-sc query=bash" in script.stdout and script.stdout.rstrip().endswith("hydra_bash_completion bnbench")
    (tmp_path / "complete.sh").write_text(script.stdout)

    def complete(line: str) -> list[str]:
        words = line.split() + ([""] if line.endswith(" ") else [])
        shell = ("source complete.sh; COMP_LINE=\"$LINE\"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=($LINE); "
                 f"COMP_CWORD={len(words) - 1}; hydra_bash_completion; echo \"${{COMPREPLY[@]}}\"")
        out = subprocess.run(["bash", "-c", shell], cwd=tmp_path, env={**env, "LINE": line}, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and "unknown command" not in out.stderr, out.stderr[-2000:]
        return out.stdout.split()

    assert complete("bnbench tr") == ["train"]
    assert "norm=" in complete("bnbench train no")
    assert complete("bnbench train norm=") == ["norm=batch", "norm=none"]
    assert complete("bnbench train data=mnist lr=x") == ["lr=x1", "lr=x30", "lr=x5"]
    assert "paper_mnist" in complete("bnbench study pa")
    assert complete("bnbench study paper_mnist shuffle=s") == ["shuffle=shard"]


@pytest.mark.parametrize("args, mentions", [
    (["train", "recipe.lr=-0.1"], "recipe.lr must be > 0"),
    (["train", "-m", "seed=0,-1"], "seed must be in"),  # the first job is fine: not built before the second is checked
    (["study", "paper_mnist", "lr.scale=0"], "lr.scale must be > 0"),
])
def test_a_bad_value_is_reported_before_torch_is_imported(args, mentions, tmp_path):
    """Values (schema ranges, the recipe and its toggles, the step budget, intervals) are checked
    on every job before anything imports torch or Lightning (~5 s): the answer comes at once."""
    code = ("import sys\nfrom bnbench.cli import main\n"
            "status = main(sys.argv[1:])\n"
            "assert status == 2, status\n"
            "assert 'torch' not in sys.modules, 'torch was imported before the error'\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert mentions in proc.stderr
    assert_nothing_written(tmp_path)
