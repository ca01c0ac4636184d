"""Override strings, read by Hydra's parser (bnbench/overrides.py), and what reads them: a
study's launch and jobs, `bnbench study`'s paths, the command a study's report shows."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import OverrideParseException

from bnbench.overrides import dedupe, key_of, value_of, value_text
from bnbench.report.build import study_command
from bnbench.study.spec import launch_of


@pytest.mark.parametrize("override,key", [
    ("a=1", "a"), ("+a.b=x", "a.b"), ("++a=2", "a"), ("~a", "a"), ("~a=3", "a"), ("db@pkg=mysql", "db@pkg"),
    ("hydra/launcher=local", "hydra/launcher"), ("recipe.lr=0.1,0.3", "recipe.lr"),
    ("paths.results='a=b'", "paths.results"),
])
def test_key_of(override, key):
    assert key_of(override) == key


def test_value_of_is_the_last_as_hydra_parses_it():
    overrides = ["paths.results=first", "seed=3", "+paths.results='a b'", "study.launch=2026-12-01_15-18-35"]
    assert value_of(overrides, "paths.results") == "a b"
    assert value_of(overrides, "seed") == 3
    assert value_of(overrides, "study.launch") == "2026-12-01_15-18-35"
    assert value_of(overrides, "paths.reports") is None and value_of(overrides, "paths.reports", "reports") == "reports"
    assert value_of(["hydra.sweeper.seeds=[0, 2]"], "hydra.sweeper.seeds") == [0, 2]


def test_value_text_is_the_value_as_written():
    assert value_text("recipe.lr=1e-1") == "1e-1" and value_text("a=b=c") == "b=c" and value_text("a=") == ""
    assert value_text("~a") is None


def test_dedupe_keeps_each_keys_last_override_in_order():
    assert dedupe(["a=1", "b=2", "+a=3", "~b", "c=4", "db@pkg=x", "db=y"]) == ["+a=3", "~b", "c=4", "db@pkg=x", "db=y"]


def test_a_string_hydra_cannot_parse_is_hydras_error():
    with pytest.raises(OverrideParseException):
        key_of("paths.reports=~/r")


def test_the_launch_a_study_names_or_a_new_one():
    assert launch_of(["seed=1", "study.launch=L1", "study.launch=L2"]) == "L2"
    assert launch_of(["study.launch='my launch'"]) == "my launch"
    assert launch_of(["seed=1"])[:2] == "20" and len(launch_of([])) == len("2026-12-01_15-18-35")


def test_the_report_shows_the_users_study_command():
    user = ["data.root=/d", "trainer.max_steps=40", "study.launch=L1", "run.threads=1"]
    assert study_command("tiny", {"user_overrides": user}) == \
        "bnbench study tiny data.root=/d trainer.max_steps=40 run.threads=1"
    # a study.json from before `user_overrides`: its argv less what `bnbench study` added
    argv = ["bnbench", "-m", "hydra/sweeper=study", "hydra.sweeper.study=/a/tiny.yaml", "hydra/launcher=local",
            "run.threads=1", "trainer.enable_progress_bar=false", "study.name=tiny", "study.launch=L1",
            "data.root=/d", "trainer.max_steps=40", "study.launch=L1"]
    assert study_command("tiny", {"command": argv}) == "bnbench study tiny data.root=/d trainer.max_steps=40"
    assert study_command("tiny", {"command": argv, "user_overrides": None}) == study_command("tiny", {"command": argv})


def test_neither_the_cli_nor_the_study_module_imports_hydras_parser_and_the_report_not_the_cli():
    code = ("import sys, bnbench.cli, bnbench.overrides, bnbench.study.spec\n"
            "assert 'hydra.core.override_parser.overrides_parser' not in sys.modules\n"
            "from bnbench.report.build import study_command\n"
            "study_command('tiny', {'command': ['bnbench', 'run.threads=1']})\n"
            "sys.modules.pop('bnbench.cli')\n"
            "study_command('tiny', {'command': ['bnbench', 'run.threads=1']})\n"
            "assert 'bnbench.cli' not in sys.modules, 'the report imports the CLI'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
