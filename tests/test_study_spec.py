"""Study files: validation (one-line errors naming the file and key) and job expansion."""

from __future__ import annotations

import pytest

from bnbench.errors import ConfigError
from bnbench.study.spec import available, dedupe, load_study


@pytest.mark.parametrize("name", ["paper_mnist", "mlp_lr_sweep", "inception_lr_sweep", "paper_table", "modifications"])
def test_committed_studies_load(name):
    spec = load_study(name)
    assert spec.reference in spec.variants
    assert len(spec.jobs("L")) == len(spec.variants) * len(spec.cells()) * len(spec.seeds)


def test_jobs_are_variants_x_grid_x_seeds_and_the_user_wins():
    spec = load_study("paper_mnist")
    jobs = spec.jobs("L", seeds=[7], extra=["recipe.lr=0.3", "trainer.max_steps=10"])
    assert len(jobs) == len(spec.variants) * len(spec.cells())
    for job in jobs:
        assert "seed=7" in job and "study.launch=L" in job and "trainer.max_steps=10" in job
        assert [o for o in job if o.startswith("recipe.lr=")] == ["recipe.lr=0.3"]  # the user's value, once


def test_dedupe_keeps_the_last_value_of_each_key():
    assert dedupe(["a=1", "b=2", "a=3", "+c=4", "c=5"]) == ["b=2", "a=3", "c=5"]


@pytest.mark.parametrize("text,mentions", [
    ("seeds: [0]\n", "variants"),
    ("seeds: []\nvariants: {a: [x=1]}\n", "seeds"),
    ("seeds: [0]\nvariants: {a: x=1}\n", "variants.a"),
    ("seeds: [0]\nvariants: {a: [x=1]}\nreference: b\n", "reference 'b'"),
    ("seeds: [0]\nvariants: {a: [x=1]}\ncontrasts: [[a, c]]\n", "contrast"),
    ("seeds: [0]\nvariants: {a: [x=1]}\nsedes: [1]\n", "unknown key"),
    ("seeds: [0\n", "not valid YAML"),
])
def test_bad_study_files(tmp_path, text, mentions):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_study(str(path))
    assert mentions in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_unknown_study_lists_the_available_ones():
    with pytest.raises(ConfigError, match="paper_table"):
        load_study("paper_tabel")
    assert {"paper_mnist", "paper_table", "modifications"} <= set(available())


def test_a_study_in_the_working_directory_comes_before_the_packaged_one(tmp_path, monkeypatch):
    from bnbench.study.spec import ABLATIONS, find_study, search_path, studies

    monkeypatch.chdir(tmp_path)
    assert search_path() == [tmp_path / "ablations", ABLATIONS]
    (tmp_path / "ablations").mkdir()
    mine = tmp_path / "ablations" / "paper_mnist.yaml"
    mine.write_text("seeds: [0]\nvariants: {a: [experiment=mnist_baseline]}\n")
    (tmp_path / "ablations" / "extra.yaml").write_text("seeds: [0]\nvariants: {a: [experiment=mnist_baseline]}\n")
    assert find_study("paper_mnist") == mine and find_study("paper_table") == ABLATIONS / "paper_table.yaml"
    assert dict(studies())["paper_mnist"] == mine and "extra" in available() and "modifications" in available()
    assert load_study("extra").variants == {"a": ["experiment=mnist_baseline"]}
    with pytest.raises(ConfigError, match="ablations"):
        find_study("nowhere")
