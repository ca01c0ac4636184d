"""data=mnist and data=fashion_mnist find their four IDX files where other tools leave them
(bnbench/data/idx.py LAYOUTS), on tiny generated files; and say in one line where they looked
when the files are not there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bnbench.data.idx import find_idx, write_idx
from bnbench.data.in_memory import SPLITS, load_split, locate_files
from bnbench.errors import DataError
from conftest import records_under, run_cli

HINT = "Bring the files."
STEMS = [stem for pair in SPLITS.values() for stem in pair]


def write_files(folder: Path, gz: bool = True, dotted: bool = False, n_train: int = 12, n_test: int = 6) -> Path:
    """The four files of a tiny dataset in `folder`: gzip-compressed or not, named with dashes
    (train-images-idx3-ubyte) or with a dot before idx (train-images.idx3-ubyte)."""
    folder.mkdir(parents=True, exist_ok=True)
    for (images, labels), n in zip(SPLITS.values(), (n_train, n_test)):
        for stem, data in ((images, torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8)),
                           (labels, torch.arange(n, dtype=torch.uint8) % 10)):
            name = ".idx".join(stem.rsplit("-idx", 1)) if dotted else stem
            write_idx(folder / (name + (".gz" if gz else "")), data)
    return folder


def assert_found_in(found: dict, folder: Path) -> None:
    assert set(found) == set(SPLITS)
    for images, labels in found.values():
        assert images.parent == folder and labels.parent == folder
        x, y = load_split(images, labels, binarize=False)
        assert x.shape[1:] == (1, 28, 28) and len(x) == len(y)


# (dataset, where the tool leaves the files, what data.root points at), relative to one folder
LAYOUTS = [
    ("mnist", ".", "."),  # flat, as the MNIST site's files and Debian's package
    ("fashion_mnist", ".", "."),
    ("mnist", "MNIST/raw", "."),  # torchvision: datasets.MNIST(root) -> <root>/MNIST/raw/
    ("mnist", "MNIST/raw", "MNIST"),
    ("mnist", "MNIST/raw", "MNIST/raw"),
    ("fashion_mnist", "FashionMNIST/raw", "."),  # datasets.FashionMNIST(root)
    ("fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
    ("fashion_mnist", "FashionMNIST/raw", "FashionMNIST/raw"),
    ("fashion_mnist", "data/fashion", "."),  # a clone of github.com/zalandoresearch/fashion-mnist
    ("fashion_mnist", "data/fashion", "data"),
    ("mnist", "data/mnist", "."),  # ... where its README asks for MNIST
    ("fashion_mnist", "fashion-mnist", "."),  # /usr/share/datasets (Debian), ~/.keras/datasets (Keras)
]


@pytest.mark.parametrize("name,where,root", LAYOUTS, ids=[f"{n}:{w}:root={r}" for n, w, r in LAYOUTS])
def test_each_layout_is_found(tmp_path, name, where, root):
    write_files(tmp_path / where)
    assert_found_in(locate_files(name, str(tmp_path / root), HINT), tmp_path / where)  # tmp_path / "." is tmp_path


@pytest.mark.parametrize("gz,dotted", [(True, False), (False, False), (True, True), (False, True)])
def test_flat_files_gzipped_or_not_with_dashes_or_dots(tmp_path, gz, dotted):
    write_files(tmp_path, gz=gz, dotted=dotted)
    found = locate_files("mnist", str(tmp_path), HINT)
    assert_found_in(found, tmp_path)
    name = found["train"][0].name
    assert name.endswith(".gz") == gz and (name.startswith("train-images.idx3") == dotted)


def test_torchvisions_raw_folder_with_both_the_downloads_and_the_unpacked_files(tmp_path):
    raw = write_files(tmp_path / "MNIST" / "raw", gz=True)
    write_files(raw, gz=False)  # torchvision unpacks next to the .gz downloads
    found = locate_files("mnist", str(tmp_path), HINT)
    assert_found_in(found, raw)
    assert found["test"][1] == raw / "t10k-labels-idx1-ubyte.gz"  # .gz first, as in a flat folder


def test_find_idx_order(tmp_path):
    for name in ("x-idx1-ubyte", "x.idx1-ubyte.gz", "x.idx1-ubyte"):
        (tmp_path / name).write_bytes(b"")
    assert find_idx(tmp_path, "x-idx1-ubyte") == tmp_path / "x-idx1-ubyte"  # the dashed name first
    (tmp_path / "x-idx1-ubyte").unlink()
    assert find_idx(tmp_path, "x-idx1-ubyte") == tmp_path / "x.idx1-ubyte.gz"
    assert find_idx(tmp_path, "y-idx1-ubyte") is None


def test_each_dataset_takes_its_own_folder_of_a_torchvision_root(tmp_path):
    write_files(tmp_path / "MNIST" / "raw")
    write_files(tmp_path / "FashionMNIST" / "raw")
    assert_found_in(locate_files("mnist", str(tmp_path), HINT), tmp_path / "MNIST" / "raw")
    assert_found_in(locate_files("fashion_mnist", str(tmp_path), HINT), tmp_path / "FashionMNIST" / "raw")


def test_a_folder_with_all_four_wins_over_an_earlier_one_with_some(tmp_path):
    write_files(tmp_path / "MNIST" / "raw")
    write_idx(tmp_path / "train-labels-idx1-ubyte", torch.zeros(3, dtype=torch.uint8))  # a stray file
    assert_found_in(locate_files("mnist", str(tmp_path), HINT), tmp_path / "MNIST" / "raw")


def test_fashion_mnist_files_are_not_taken_for_mnist(tmp_path):
    write_files(tmp_path / "FashionMNIST" / "raw")
    write_files(tmp_path / "data" / "fashion")
    with pytest.raises(DataError):
        locate_files("mnist", str(tmp_path), HINT)


def assert_one_line(err: pytest.ExceptionInfo, *texts: str) -> str:
    message = str(err.value)
    assert "\n" not in message and message.endswith(HINT), message
    for text in texts:
        assert text in message, (text, message)
    return message


def test_nothing_found_names_the_root_the_file_and_the_other_folders_searched(tmp_path):
    with pytest.raises(DataError) as err:
        locate_files("mnist", str(tmp_path), HINT)
    assert_one_line(err, f"data file not found: {tmp_path / STEMS[0]}(.gz)", f"data.root={tmp_path}", "data=mnist",
                    "also looked in MNIST/raw/, raw/, data/mnist/, mnist/ under it")


def test_a_root_that_does_not_exist_is_said_so(tmp_path):
    with pytest.raises(DataError) as err:
        locate_files("fashion_mnist", str(tmp_path / "nope"), HINT)
    assert_one_line(err, f"{tmp_path / 'nope' / STEMS[0]}(.gz)", "no such folder")


@pytest.mark.parametrize("missing", STEMS)
def test_a_file_missing_from_a_layout_is_named_in_that_layouts_folder(tmp_path, missing):
    raw = write_files(tmp_path / "FashionMNIST" / "raw")
    (raw / f"{missing}.gz").unlink()
    with pytest.raises(DataError) as err:
        locate_files("fashion_mnist", str(tmp_path), HINT)
    message = assert_one_line(err, f"data file not found: {raw / missing}(.gz)", f"data.root={tmp_path}")
    assert "also looked in" not in message


def test_data_mnist_trains_from_a_torchvision_root_through_the_cli(tmp_path):
    """The real command: data.root at torchvision's root, the files in MNIST/raw/."""
    write_files(tmp_path / "tv" / "MNIST" / "raw", n_train=120, n_test=40)
    proc = run_cli("train", "data=mnist", f"data.root={tmp_path / 'tv'}", "logger=none", "trainer.max_steps=4",
                   "run.eval_every=2", "data.val_size=60", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(records_under(tmp_path / "results")) == 1
