"""Bad input: a one-line error naming the problem, a non-zero exit, no record written."""

from __future__ import annotations

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
    assert not records_under(tmp_path)


def test_mnist_without_root_says_where_to_put_it(tmp_path):
    proc = run_cli("train", "data=mnist", "logger=none", cwd=tmp_path)
    assert_one_line_error(proc, "data=mnist needs data.root")
    assert not records_under(tmp_path)


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
])
def test_bad_config(overrides, mentions, tiny_data, tmp_path):
    proc = run_cli("train", f"data.root={tiny_data}", "logger=none", *overrides, cwd=tmp_path)
    assert_one_line_error(proc, *mentions)
    assert not records_under(tmp_path)


def test_unknown_study(tmp_path):
    proc = run_cli("study", "no_such_study", cwd=tmp_path)
    assert_one_line_error(proc, "no_such_study", "paper_mnist")


def test_study_with_a_bad_override_fails_before_running_anything(tiny_data, tmp_path):
    proc = run_cli("study", "paper_mnist", f"data.root={tiny_data}", "recipe.lr=-1", "logger=none", cwd=tmp_path)
    assert_one_line_error(proc, "recipe.lr")
    assert not records_under(tmp_path)
    assert not (tmp_path / "reports").exists()


def test_report_without_results(tmp_path):
    proc = run_cli("report", "paper_mnist", cwd=tmp_path)
    assert_one_line_error(proc, "no results for study 'paper_mnist'")


def test_unknown_command(tmp_path):
    proc = run_cli("trian", cwd=tmp_path)
    assert_one_line_error(proc, "unknown command 'trian'", "train, study, report")
