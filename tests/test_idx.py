"""IDX reading/writing and the in-memory MNIST-format data module."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from bnbench.data.idx import find_idx, read_idx, write_idx
from bnbench.data.in_memory import SPLITS, IDXDataModule, load_split, locate_files
from bnbench.errors import ConfigError, DataError

HINT = "Run `make data` to download them."


def random_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)


def write_dataset(root: Path, n_train: int = 120, n_test: int = 30, gz: bool = False) -> None:
    """Train labels are the example's index in the training file, so a batch's images can be
    checked against its labels (and its examples against the validation split)."""
    suffix = ".gz" if gz else ""
    data = {
        "train": (random_images(n_train, 0), torch.arange(n_train, dtype=torch.uint8)),
        "test": (random_images(n_test, 1), torch.randint(0, 10, (n_test,), generator=torch.Generator().manual_seed(2)).to(torch.uint8)),
    }
    for split, (images_stem, labels_stem) in SPLITS.items():
        images, labels = data[split]
        write_idx(root / f"{images_stem}{suffix}", images)
        write_idx(root / f"{labels_stem}{suffix}", labels)


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path, phrase: str = "") -> None:
    """One line, naming the file; `phrase` is looked for outside the path (tmp paths contain test names)."""
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert phrase in message.replace(str(path), "<path>")


# --------------------------------------------------------------------------- IDX files


@pytest.mark.parametrize("name", ["data-idx3-ubyte", "data-idx3-ubyte.gz"])
@pytest.mark.parametrize("shape", [(7,), (5, 28, 28), (2, 3, 4, 5)])
def test_write_read_round_trip(tmp_path, name, shape):
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    path = tmp_path / name
    write_idx(path, data)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")  # gzip only when the name says so
    back = read_idx(path, expect_ndim=len(shape))
    assert back.dtype == torch.uint8
    assert_close(back, data, rtol=0, atol=0)


def test_header_layout(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, torch.tensor([1, 2, 3], dtype=torch.uint8))
    assert path.read_bytes() == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2, 3])


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "keep,phrase",
    [(lambda raw: raw[:-1], "truncated or padded"), (lambda raw: raw[:-100], "truncated or padded"),
     (lambda raw: raw[:10], "truncated (header incomplete)")],
    ids=["last-byte", "data", "header"],
)
def test_truncated_file(tmp_path, gz, keep, phrase):
    plain = tmp_path / "images"
    write_idx(plain, random_images(2, 0))
    raw = keep(plain.read_bytes())
    path = tmp_path / ("cut.gz" if gz else "cut")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError) as err:
        read_idx(path, expect_ndim=3)
    assert_one_line_naming(err, path, phrase)


def test_padded_file(tmp_path):
    path = tmp_path / "images"
    write_idx(path, random_images(2, 0))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataError) as err:
        read_idx(path, expect_ndim=3)
    assert_one_line_naming(err, path, "padded")


@pytest.mark.parametrize("first_bytes", [b"\x01\x00", b"\x00\x07", b"PK"])
def test_bad_magic_number(tmp_path, first_bytes):
    path = tmp_path / "images"
    write_idx(path, random_images(2, 0))
    path.write_bytes(first_bytes + path.read_bytes()[2:])
    with pytest.raises(DataError) as err:
        read_idx(path, expect_ndim=3)
    assert_one_line_naming(err, path, "bad magic number")


def test_empty_file(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(b"")
    with pytest.raises(DataError) as err:
        read_idx(path, expect_ndim=3)
    assert_one_line_naming(err, path, "bad magic number")


@pytest.mark.parametrize("written,expected", [((10,), 3), ((2, 28, 28), 1), ((2, 28, 28, 1), 3)])
def test_wrong_ndim(tmp_path, written, expected):
    path = tmp_path / "file.gz"
    write_idx(path, torch.zeros(written, dtype=torch.uint8))
    with pytest.raises(DataError) as err:
        read_idx(path, expect_ndim=expected)
    assert_one_line_naming(err, path, f"expected {expected}-d unsigned bytes, header says type 0x08 with {len(written)} dimensions")


def test_wrong_type_code(tmp_path):
    path = tmp_path / "floats"
    write_idx(path, torch.zeros(4, dtype=torch.uint8))
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # float
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        read_idx(path, expect_ndim=1)
    assert_one_line_naming(err, path, "type 0x0d")


def corrupt_not_gzip(raw: bytes) -> bytes:
    return b"this is not gzip data at all"


def corrupt_truncated(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def corrupt_crc(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[-8] ^= 0xFF  # CRC32 of the trailer
    return bytes(b)


def corrupt_deflate(raw: bytes) -> bytes:
    b = bytearray(raw)
    for i in range(12, 40):
        b[i] ^= 0x5A
    return bytes(b)


@pytest.mark.parametrize("corrupt", [corrupt_not_gzip, corrupt_truncated, corrupt_crc, corrupt_deflate])
def test_corrupt_gzip(tmp_path, corrupt):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, random_images(3, 0))
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DataError) as err:
        read_idx(path, expect_ndim=3)
    assert_one_line_naming(err, path, "cannot read data file")


def test_missing_file(tmp_path):
    path = tmp_path / "nope"
    with pytest.raises(DataError) as err:
        read_idx(path, expect_ndim=1)
    assert_one_line_naming(err, path, "cannot read data file")


@pytest.mark.parametrize("present,expected", [(("x",), "x"), (("x.gz",), "x.gz"), (("x", "x.gz"), "x.gz"), ((), None)])
def test_find_idx(tmp_path, present, expected):
    for name in present:
        (tmp_path / name).write_bytes(b"")
    found = find_idx(tmp_path, "x")
    assert found == (tmp_path / expected if expected else None)


def test_images_and_labels_disagree(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels.gz"
    write_idx(images, random_images(5, 0))
    write_idx(labels, torch.zeros(4, dtype=torch.uint8))
    with pytest.raises(DataError) as err:
        load_split(images, labels, binarize=False)
    message = str(err.value)
    assert str(images) in message and str(labels) in message and "\n" not in message
    assert "5 images" in message and "4 labels" in message


# --------------------------------------------------------------------------- locate_files


def test_locate_files_finds_gz_and_plain(tmp_path):
    write_dataset(tmp_path, 4, 2, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").rename(tmp_path / "t10k-labels-idx1-ubyte.gz")
    found = locate_files("mnist", str(tmp_path), HINT)
    assert found["train"] == (tmp_path / "train-images-idx3-ubyte", tmp_path / "train-labels-idx1-ubyte")
    assert found["test"] == (tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte.gz")


@pytest.mark.parametrize("missing", [stem for stems in SPLITS.values() for stem in stems])
def test_locate_files_missing(tmp_path, missing):
    write_dataset(tmp_path, 4, 2, gz=True)
    (tmp_path / f"{missing}.gz").unlink()
    with pytest.raises(DataError) as err:
        locate_files("fashion_mnist", str(tmp_path), HINT)
    message = str(err.value)
    assert str(tmp_path / missing) in message
    assert HINT in message
    assert "fashion_mnist" in message
    assert "\n" not in message


def test_locate_files_without_root():
    with pytest.raises(DataError, match=r"data\.root") as err:
        locate_files("mnist", None, HINT)
    assert HINT in str(err.value)


def test_data_module_without_root_raises_at_construction():
    with pytest.raises(DataError, match=r"data\.root"):
        IDXDataModule("mnist", None, batch_size=8)


# --------------------------------------------------------------------------- IDXDataModule


N_VAL = 20  # of the 140 training examples written: 120 are left for training


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    write_dataset(root, 120 + N_VAL, 30, gz=True)
    return root


def module(root, **kwargs) -> IDXDataModule:
    args = dict(batch_size=32, eval_batch_size=8, shuffle="global", num_shards=4, seed=0, val_size=N_VAL)
    args.update(kwargs)
    return IDXDataModule("mnist", str(root), **args)


def positions(dm: IDXDataModule, labels: torch.Tensor) -> torch.Tensor:
    """Positions in the training part of examples whose labels are their index in the file."""
    return torch.searchsorted(dm.train_set[1], labels)


def epoch(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("binarize", [False, True])
def test_setup_shapes_and_range(data_root, binarize):
    dm = module(data_root, binarize=binarize)
    dm.setup()
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = dm.train_set, dm.val_set, dm.test_set
    assert x_train.shape == (120, 1, 28, 28) and x_val.shape == (N_VAL, 1, 28, 28) and x_test.shape == (30, 1, 28, 28)
    assert x_train.dtype == x_val.dtype == x_test.dtype == torch.float32
    assert y_train.shape == (120,) and y_val.shape == (N_VAL,) and y_test.shape == (30,)
    assert y_train.dtype == y_val.dtype == y_test.dtype == torch.int64
    for x in (x_train, x_val, x_test):
        assert x.min() >= 0 and x.max() <= 1
    raw = read_idx(data_root / "train-images-idx3-ubyte.gz", expect_ndim=3)
    for x, y in ((x_train, y_train), (x_val, y_val)):  # labels: the example's index in the file
        if binarize:
            assert_close(x[:, 0], (raw[y] >= 128).float(), rtol=0, atol=0)
        else:
            assert_close(x[:, 0], raw[y].float() / 255)
    if binarize:
        assert set(torch.unique(x_train).tolist()) == {0.0, 1.0}
    else:
        assert len(torch.unique(x_train)) > 2
    # the two parts of the training file, each in stored order
    assert_close(torch.sort(torch.cat([y_train, y_val])).values, torch.arange(120 + N_VAL))
    assert torch.equal(y_train, y_train.sort().values) and torch.equal(y_val, y_val.sort().values)
    assert dm.split_sizes() == {"train_size": 120, "val_size": N_VAL, "test_size": 30}


def test_fixed_batch_is_first_test_images(data_root):
    dm = module(data_root)
    dm.setup()
    assert_close(dm.fixed_batch(5), dm.test_set[0][:5], rtol=0, atol=0)


@pytest.mark.parametrize("shuffle", ["global", "shard", "within_shard"])
@pytest.mark.parametrize("batch_size", [32, 40, 7])
def test_train_batches_are_full_and_consistent(data_root, shuffle, batch_size):
    dm = module(data_root, shuffle=shuffle, batch_size=batch_size)
    loader = dm.train_dataloader()
    batches = epoch(loader)
    assert len(batches) == len(loader) == 120 // batch_size  # drop-last
    images = dm.train_set[0]
    for x, y in batches:
        assert x.shape == (batch_size, 1, 28, 28) and y.shape == (batch_size,)
        assert_close(x, images[positions(dm, y)], rtol=0, atol=0)  # images stay paired with their labels
        assert not set(y.tolist()) & set(dm.val_set[1].tolist())  # never a validation example
    seen = torch.cat([y for _, y in batches])
    assert len(torch.unique(seen)) == len(seen)  # no example twice in an epoch


def test_val_dataloader_covers_validation_then_test_set_once(data_root):
    dm = module(data_root, eval_batch_size=8)
    val_loader, test_loader = dm.val_dataloader()  # bnbench.keys.EVAL_SETS: validation, test
    for loader, part, sizes in ((val_loader, dm.val_set, [8, 8, 4]), (test_loader, dm.test_set, [8, 8, 8, 6])):
        chunks = epoch(loader)
        assert [len(y) for _, y in chunks] == sizes
        assert len(loader) == len(sizes)
        x = torch.cat([c[0] for c in chunks])
        y = torch.cat([c[1] for c in chunks])
        assert_close(x, part[0], rtol=0, atol=0)
        assert_close(y, part[1], rtol=0, atol=0)
        # A second pass gives the same chunks.
        assert_close(torch.cat([c[1] for c in epoch(loader)]), y)


@pytest.mark.parametrize("shuffle", ["global", "shard", "within_shard"])
def test_same_seed_same_batches(data_root, shuffle):
    a, b = module(data_root, shuffle=shuffle, seed=3), module(data_root, shuffle=shuffle, seed=3)
    la, lb = a.train_dataloader(), b.train_dataloader()
    for _ in range(2):  # two epochs
        ya = [y for _, y in epoch(la)]
        yb = [y for _, y in epoch(lb)]
        assert_close(torch.stack(ya), torch.stack(yb), rtol=0, atol=0)


def test_different_seed_different_batches(data_root):
    ya = torch.stack([y for _, y in epoch(module(data_root, seed=0).train_dataloader())])
    yb = torch.stack([y for _, y in epoch(module(data_root, seed=1).train_dataloader())])
    assert not torch.equal(ya, yb)


def test_successive_epochs_differ_under_global_shuffle(data_root):
    loader = module(data_root, shuffle="global").train_dataloader()
    first = torch.stack([y for _, y in epoch(loader)])
    second = torch.stack([y for _, y in epoch(loader)])
    assert not torch.equal(first, second)
    # Not merely the same batches in another order: batch membership changes too.
    assert {frozenset(b.tolist()) for b in first} != {frozenset(b.tolist()) for b in second}


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(batch_size=0), r"data\.batch_size"), (dict(shuffle="random"), "shuffle"), (dict(num_shards=0), r"data\.num_shards"),
     (dict(val_size=0), r"data\.val_size must be >= 1 .*, got 0$"), (dict(val_size=-5), r"data\.val_size must be >= 1 .*, got -5$"),
     (dict(val_seed=-1), r"data\.val_seed must be >= 0, got -1")],
)
def test_bad_config(data_root, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        module(data_root, **kwargs)


@pytest.mark.parametrize("shuffle", ["shard", "within_shard"])
def test_sharded_shuffle_batches_are_shards(data_root, shuffle):
    """4 shards of 30 and batches of 30: each batch is one shard, in stored order only for "shard"
    (shards of the training part, the validation examples taken out)."""
    dm = module(data_root, shuffle=shuffle, batch_size=30, num_shards=4)
    batches = [positions(dm, y) for _, y in epoch(dm.train_dataloader())]
    assert len(batches) == 4
    starts = []
    for y in batches:
        start = int(y.min())
        assert start % 30 == 0
        assert torch.equal(torch.sort(y).values, torch.arange(start, start + 30))
        assert torch.equal(y, torch.arange(start, start + 30)) == (shuffle == "shard")
        starts.append(start)
    assert sorted(starts) == [0, 30, 60, 90]


def test_global_shuffle_mixes_within_batches(data_root):
    dm = module(data_root, shuffle="global", batch_size=30)
    for _, y in epoch(dm.train_dataloader()):
        y = positions(dm, y)
        assert not torch.equal(y, torch.sort(y).values)
        assert len(set((y // 30).tolist())) > 1  # not confined to one stored block


@pytest.mark.parametrize("val_size, left", [(4000, 50), (4050, 0), (9000, 0)])
def test_a_validation_set_leaving_less_than_a_batch_is_a_config_error(tmp_path, val_size, left):
    from conftest import make_idx_dataset

    root = make_idx_dataset(tmp_path / "d", n_train=50, n_test=10, n_val=4000)
    dm = IDXDataModule("tiny", str(root), batch_size=64, val_size=val_size)
    with pytest.raises(ConfigError) as err:
        dm.setup()
    assert str(err.value) == (f"data.val_size={val_size} leaves {left} of the 4050 training examples of "
                              f"{root / 'train-images-idx3-ubyte.gz'} for training, fewer than one batch "
                              "(data.batch_size=64)")
