"""ImageFolderDataModule (data=imagenet) on a tiny generated ImageFolder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bnbench.data.imagefolder import (EpochSampler, ImageFolderDataModule, crop_box, draft_for_crop,
                                      random_resized_crop)
from bnbench.data.ordering import epoch_order, shard_bounds
from bnbench.errors import ConfigError, DataError

CLASSES = ["n01", "n02", "n03"]
SIZES = [(40, 30), (50, 64), (33, 33), (64, 20), (20, 48)]  # (width, height)
N_TRAIN, N_VAL = 7, 2  # per class, in train/ and val/ (val/ is the test set)
VAL_SIZE = 6  # of train/'s 21 images, held out for validation: 15 left for training


def write_image(path, size, colour, seed):
    """A solid colour with noise, so crops and flips change the pixels."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = np.clip(np.array(colour) + rng.integers(-60, 60, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def root(tmp_path):
    """3 classes x 7 training and 2 validation (test) images of varied sizes; mixed extensions."""
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    for c, (name, colour) in enumerate(zip(CLASSES, colours)):
        for split, n in (("train", N_TRAIN), ("val", N_VAL)):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for k in range(n):
                ext = {0: ".JPEG", 1: ".png"}.get(k, ".jpg")
                write_image(folder / f"img{k}{ext}", SIZES[(k + c) % len(SIZES)], colour, seed=100 * c + k)
            (folder / "notes.txt").write_text("not an image")
    return tmp_path


def make(folder, **kw):
    args = dict(name="imagenet", root=None if folder is None else str(folder), batch_size=4, eval_batch_size=4, num_workers=0,
                image_size=32, resize=36, shuffle="global", num_shards=3, seed=0, val_size=VAL_SIZE)
    return ImageFolderDataModule(**{**args, **kw})


def first_batch(dm):
    return next(iter(dm.train_dataloader()))


def test_shapes_and_classes(root):
    dm = make(root, image_size=24, resize=28)
    assert dm.num_classes == 3 and dm.channels == 3 and dm.in_shape == (3, 24, 24)
    assert len(dm.train_files[1]) + len(dm.val_files[1]) == 3 * N_TRAIN  # notes.txt ignored, .JPEG/.png/.jpg kept
    assert dm.split_sizes() == {"train_size": 15, "val_size": VAL_SIZE, "test_size": 3 * N_VAL}
    for paths, labels in (dm.train_files, dm.val_files):  # both parts of train/, in stored order: by class, name
        assert labels.tolist() == sorted(labels.tolist())
        assert [p.decode() for p in paths] == sorted(p.decode() for p in paths)
    assert not set(dm.train_files[0]) & set(dm.val_files[0])


def test_training_batch(root):
    dm = make(root)
    loader = dm.train_dataloader()
    assert len(loader) == 15 // 4  # drop_last
    x, y = first_batch(dm)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8  # scaled to [0, 1] on the device (Classifier)
    assert y.shape == (4,) and y.dtype == torch.int64
    assert x.float().std() > 0
    assert set(y.tolist()) <= {0, 1, 2}


def test_a_run_trains_and_evaluates_on_uint8_batches(root, tmp_path):
    """The loader's uint8 images reach the model as float32 in [0, 1] (Classifier.model_input) in
    training, evaluation, the population pass and its accuracies (Alg. 2: norm.inference=population),
    with the photometric distortions of the recipe."""
    from conftest import compose

    from bnbench.train import run

    cfg = compose(["data=imagenet", "model=bn_inception", f"data.root={root}", "data.image_size=32",
                   "data.resize=36", "data.num_workers=0", "recipe.batch_size=4", f"data.val_size={VAL_SIZE}",
                   "data.eval_batch_size=4", "logger=none", f"paths.results={tmp_path / 'results'}",
                   "trainer.max_steps=4", "run.eval_every=2", "norm=batch", "norm.inference=population",
                   "norm.population_batches=2", "run.checkpoint.every_s=null"])
    assert cfg.recipe.distortion.brightness > 0  # the distortions run on the scaled batches
    rec = run(cfg)
    assert rec["status"] == "completed" and rec["steps"] == 4
    assert rec["population_batches"] == 2
    for key in ("final_acc", "final_test_acc", "final_acc_ema", "final_test_acc_ema"):
        assert 0 <= rec[key] <= 1


def test_test_set_every_image_once_in_sorted_order(root):
    dm = make(root, eval_batch_size=4)
    batches = list(dm.val_dataloader()[1])  # [validation, test]: val/ is the test set
    assert [len(y) for _, y in batches] == [4, 2]  # no drop
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.uint8
    assert y.tolist() == [0, 0, 1, 1, 2, 2]
    names = [p.decode() for p in dm.test_files[0]]
    assert names == sorted(names) and len(set(names)) == 6
    # Deterministic: a second pass and the probe batch see the same pixels.
    assert torch.equal(torch.cat([b[0] for b in dm.val_dataloader()[1]]), x)
    assert torch.equal(dm.fixed_batch(5), x[:5])  # the probe's batch: uint8, as the loader sends it
    assert torch.equal(dm.fixed_batch(100), x)


def test_validation_set_is_held_out_of_train_and_the_same_for_every_seed(root):
    """data.val_size images of train/, chosen by data.val_seed alone; evaluated like the test set."""
    dm = make(root, eval_batch_size=4)
    batches = list(dm.val_dataloader()[0])
    assert [len(y) for _, y in batches] == [4, 2]
    y = torch.cat([b[1] for b in batches])
    assert y.tolist() == dm.val_files[1].tolist()
    assert all((root / "train" / p.decode()).is_file() for p in dm.val_files[0])
    for other in (make(root, seed=9), make(root, shuffle="shard", seed=1)):
        assert other.val_files[0].tolist() == dm.val_files[0].tolist()
    assert make(root, val_seed=1).val_files[0].tolist() != dm.val_files[0].tolist()
    # no training key ever names a validation image
    keys = [i for _, i in make(root, batch_size=1).train_sampler()]
    assert sorted(dm.train_files[0][keys].tolist()) == sorted(dm.train_files[0].tolist())
    assert not set(dm.train_files[0][keys].tolist()) & set(dm.val_files[0].tolist())


def test_val_subset_labels_follow_train_classes(root):
    for f in (root / "val" / "n01").iterdir():
        f.unlink()
    (root / "val" / "n01").rmdir()
    dm = make(root)
    assert dm.num_classes == 3
    y = torch.cat([b[1] for b in dm.val_dataloader()[1]])
    assert y.tolist() == [1, 1, 2, 2]


def test_sampler_follows_epoch_order_seeding(root):
    sampler = make(root, shuffle="within_shard", seed=7).train_sampler()
    for epoch in range(2):
        keys = list(sampler)
        g = torch.Generator().manual_seed(7 * 100_003 + epoch)
        # whole batches of 4 only: the 3 examples of the last, partial batch are dropped
        assert keys == [(epoch, i) for i in epoch_order("within_shard", 15, 3, g)[:12].tolist()]
    sampler.set_epoch(0)  # Lightning's per-epoch call resets the order
    assert [e for e, _ in sampler] == [0] * 12


def test_shard_keeps_stored_order_within_shard_permutes():
    bounds = shard_bounds(15, 3)
    within_sorted = []
    for epoch in range(6):
        for mode in ("shard", "within_shard"):
            sampler = EpochSampler(15, mode, num_shards=3, seed=1)
            sampler.set_epoch(epoch)
            order = [i for _, i in sampler]
            assert sorted(order) == list(range(15))
            runs = [order[k : k + 5] for k in range(0, 15, 5)]
            for run in runs:  # each run of 5 is exactly one shard, shards in some order
                start = min(run)
                assert (start, start + 5) in bounds and sorted(run) == list(range(start, start + 5))
                if mode == "shard":
                    assert run == sorted(run)
                else:
                    within_sorted.append(run == sorted(run))
    assert not all(within_sorted)


def test_same_seed_same_batches_other_seed_differs(root):
    x0, y0 = first_batch(make(root, seed=3))
    x1, y1 = first_batch(make(root, seed=3))
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    x2, _ = first_batch(make(root, seed=4))
    assert not torch.equal(x0, x2)
    loader = make(root, seed=3).train_dataloader()
    epoch0, epoch1 = next(iter(loader)), next(iter(loader))
    assert torch.equal(epoch0[0], x0) and not torch.equal(epoch1[0], x0)


def test_workers_give_the_same_batches(root):
    x0, y0 = first_batch(make(root, seed=5, num_workers=0))
    loader = make(root, seed=5, num_workers=2).train_dataloader()
    x2, y2 = next(iter(loader))
    del loader
    assert torch.equal(x0, x2) and torch.equal(y0, y2)


def test_random_resized_crop_size_and_fallback():
    img = Image.new("RGB", (200, 10), (10, 20, 30))  # aspect 20: no draw fits, so the fallback
    for seed in range(5):
        out = random_resized_crop(img, 16, np.random.default_rng(seed))
        assert out.size == (16, 16) and out.mode == "RGB"


def write_photo(path, size, seed):
    """A smooth image (gradients and waves; a seeded phase) whose crops differ by where they are."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    phase = np.random.default_rng(seed).uniform(0, 6.3)
    pixels = np.stack([255 * x / w, 255 * y / h, 128 + 100 * np.sin(x / 37 + phase) * np.cos(y / 23)], -1)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=95)


@pytest.fixture
def large_root(tmp_path):
    """2 classes x 6 training JPEGs of 960x720 (crops of 64 px can be decoded at 1/2 to 1/8), 1 test each."""
    for c in range(2):
        for split, n in (("train", 6), ("val", 1)):
            folder = tmp_path / split / f"n{c}"
            folder.mkdir(parents=True)
            for k in range(n):
                write_photo(folder / f"img{k}.jpg", (960, 720), seed=10 * c + k)
    return tmp_path


def test_draft_for_crop_picks_the_largest_reduction_leaving_the_crop_size(tmp_path):
    write_photo(tmp_path / "a.jpg", (960, 720), seed=0)
    Image.open(tmp_path / "a.jpg").save(tmp_path / "a.png")
    for box, scale, decoded in (((0, 0, 600, 500), 4, (240, 180)), ((10, 20, 140, 150), 2, (480, 360)),
                                ((0, 0, 960, 720), 8, (120, 90)), ((5, 5, 105, 705), 1, (960, 720))):
        with Image.open(tmp_path / "a.jpg") as img:
            assert draft_for_crop(img, box, 64) == scale
            assert img.convert("RGB").size == decoded
    with Image.open(tmp_path / "a.png") as img:  # not a JPEG: decoded at full size
        assert draft_for_crop(img, (0, 0, 960, 720), 64) == 1.0 and img.convert("RGB").size == (960, 720)
    img = Image.open(tmp_path / "a.png").convert("RGB")  # random_resized_crop is crop_box, resized
    box = crop_box(960, 720, np.random.default_rng(3))
    assert random_resized_crop(img, 32, np.random.default_rng(3)) == img.resize((32, 32), Image.BILINEAR, box=box)


def test_draft_keeps_the_crop_and_the_seeding(large_root):
    """data.draft: the same box of the full image, per example and seed, resampled from a
    reduced decode; deterministic per seed, whatever num_workers is."""
    def batches(**kw):
        dm = make(large_root, image_size=64, resize=72, batch_size=5, val_size=2, **kw)
        return [(x.float() / 255, y) for x, y in dm.train_dataloader()]  # as the model takes them

    full, drafted = batches(seed=3), batches(seed=3, draft=True)
    reduced = 0
    for (xf, yf), (xd, yd) in zip(full, drafted):
        assert torch.equal(yf, yd) and xd.shape == xf.shape
        assert (xd - xf).abs().mean(dim=(1, 2, 3)).max() < 0.02  # same box: pixels agree closely
        reduced += int(not torch.equal(xd, xf))
    assert reduced > 0  # some crops were decoded at reduced size
    other = batches(seed=4, draft=True)[0][0]  # another box: far from the tolerance above
    assert (other - full[0][0]).abs().mean(dim=(1, 2, 3)).min() > 0.05
    again = batches(seed=3, draft=True)
    workers = batches(seed=3, draft=True, num_workers=2)
    for (x, y), (xa, ya), (xw, yw) in zip(drafted, again, workers):
        assert torch.equal(x, xa) and torch.equal(y, ya) and torch.equal(x, xw) and torch.equal(y, yw)


def test_draft_is_a_boolean(root):
    with pytest.raises(ConfigError) as e:
        make(root, draft="yes")
    one_line(e, "data.draft", "yes")


def one_line(excinfo, *parts):
    text = str(excinfo.value)
    assert "\n" not in text, text
    for part in parts:
        assert str(part) in text, (part, text)


@pytest.mark.parametrize("key,value", [
    ("batch_size", 0), ("eval_batch_size", 0), ("image_size", 0), ("num_workers", -1),
    ("num_shards", 0), ("shuffle", "random"), ("resize", 16), ("val_size", 0), ("val_size", -1), ("val_seed", -1),
])
def test_bad_arguments(root, key, value):
    with pytest.raises(ConfigError) as e:
        make(root, **{key: value})
    one_line(e, f"data.{key}", value)


def test_root_not_set():
    with pytest.raises(DataError) as e:
        make(None, install_hint="Point it at ImageNet.")
    one_line(e, "data.root", "ImageFolder", "Point it at ImageNet.")


def test_root_missing(tmp_path):
    with pytest.raises(DataError) as e:
        make(tmp_path / "nowhere")
    one_line(e, tmp_path / "nowhere")


@pytest.mark.parametrize("split", ["train", "val"])
def test_split_missing(tmp_path, split):
    (tmp_path / ("val" if split == "train" else "train")).mkdir()
    with pytest.raises(DataError) as e:
        make(tmp_path)
    one_line(e, tmp_path / split)


def test_no_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError) as e:
        make(tmp_path)
    one_line(e, tmp_path / "train", "no class folders")


def test_empty_training_class(root):
    (root / "train" / "n04").mkdir()
    with pytest.raises(DataError) as e:
        make(root)
    one_line(e, root / "train" / "n04", "no images")


def test_no_val_images(root):
    for name in CLASSES:
        for f in (root / "val" / name).glob("img*"):
            f.unlink()
    with pytest.raises(DataError) as e:
        make(root)
    one_line(e, root / "val", "no images")


def test_val_class_not_in_train(root):
    (root / "val" / "n99").mkdir()
    with pytest.raises(DataError) as e:
        make(root)
    one_line(e, root / "val" / "n99", root / "train")


def test_fewer_images_than_a_batch(root):
    with pytest.raises(DataError) as e:
        make(root, batch_size=22)
    one_line(e, "data.batch_size=22", root / "train")


def test_a_validation_set_leaving_less_than_a_batch(root):
    with pytest.raises(ConfigError) as e:
        make(root, batch_size=16)
    assert str(e.value) == (f"data.val_size={VAL_SIZE} leaves 15 of the 21 training examples of {root / 'train'} "
                            "for training, fewer than one batch (data.batch_size=16)")


@pytest.mark.parametrize("content", ["random", "truncated"])
def test_corrupt_image(root, content):
    bad = root / "val" / "n02" / "img1.jpg"  # sorts between n02's two valid images
    if content == "random":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    else:
        write_image(bad, (64, 64), (1, 2, 3), seed=0)
        bad.write_bytes(bad.read_bytes()[:300])
    dm = make(root)  # listing only: the file is not opened until it is loaded
    with pytest.raises(DataError) as e:
        list(dm.val_dataloader()[1])
    one_line(e, bad)


def test_two_ranks_share_every_global_batch_of_the_epoch():
    """Under 2 processes each rank reads half of every global batch of 4 (data/ranks.py)."""
    one = [i for _, i in EpochSampler(15, "global", num_shards=3, seed=5, batch_size=4)]
    ranks = [[i for _, i in EpochSampler(15, "global", num_shards=3, seed=5, batch_size=4, rank=r, world=2)]
             for r in range(2)]
    assert len(one) == 12 and len(ranks[0]) == len(ranks[1]) == 6
    for step in range(3):
        assert ranks[0][2 * step:2 * step + 2] + ranks[1][2 * step:2 * step + 2] == one[4 * step:4 * step + 4]
