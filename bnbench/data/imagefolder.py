"""ImageNet (or any dataset in the ImageFolder layout) decoded from image files on the fly.

Sec. 4.2 trains Inception and BN-Inception on ImageNet's 1.28M training images with
mini-batches of 32 per device. That set does not fit in memory as tensors the way MNIST does
(bnbench/data/in_memory.py), so examples are decoded from JPEG per step by several
DataLoader worker processes.

Layout: `<root>/train/<class>/<images>` and `<root>/val/<class>/<images>`. A class's index is
the sorted position of its folder name among the training folders; val/'s folders must be a
subset of them.

Three sets: `data.val_size` images of train/ are held out for validation (data/split.py: a
permutation seeded with `data.val_seed`), on which everything is selected; training uses the
rest; val/ (ImageNet's 50,000 labelled validation images: its test labels are not public) is
the test set, reported beside and never selected on.

Training examples get a random-resized crop and a horizontal flip (the usual Inception
preprocessing; the paper names neither). With `data.draft`, a JPEG whose crop box is at least
twice the crop size each way is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, PIL's
`Image.draft`) and the same box, scaled, is resized from that: the same crop of the full
image, drawn from the same seed, resampled slightly differently (README, "Speed").
Photometric distortions (Sec. 4.2.1, modification 7) are not applied here: the
LightningModule applies them batched on the device. Evaluation resizes the shorter side and
takes the center crop. Examples leave the loader as uint8 (3, H, W) tensors, a quarter of
float32's bytes to pass from the workers and to copy to the device; the LightningModule scales
them to [0, 1] there (`Classifier.model_input`).

The sorted training list is the "stored order": shuffle=shard reads contiguous shards of it
in their stored order, as a sharded input pipeline does (Sec. 4.2.1, modification 6).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from bnbench.data.ordering import MODES, epoch_order
from bnbench.data.position import ResumableLoader, split_position, trained_batches
from bnbench.data.ranks import eval_block, per_rank_batch, rank_and_world, rank_order
from bnbench.data.split import check_split, check_val_size, split_indices
from bnbench.errors import ConfigError, DataError

SPLITS = ("train", "val")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")

# Random-resized crop (Inception's preprocessing): area fraction and aspect-ratio range.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_TRIES = 10


# --- Finding the files (cheap: directory listings only, nothing is decoded) ---------------


def class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the class folders of one split (hidden folders skipped)."""
    names = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise DataError(f"no class folders in {split_dir} (expected {split_dir}/<class>/<images>)")
    return names


def image_names(class_dir: Path) -> list[str]:
    """Sorted file names of the images in one class folder (other files ignored)."""
    return sorted(
        e.name for e in os.scandir(class_dir)
        if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith(".")
    )


def scan_split(
    split_dir: Path, classes: list[str], folders: list[str], allow_empty: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Paths (relative to split_dir) and class indices of a split's images, sorted by class
    then file name: the split's stored order."""
    index = {name: i for i, name in enumerate(classes)}
    paths, labels = [], []
    for name in folders:
        names = image_names(split_dir / name)
        if not names and not allow_empty:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {split_dir / name}")
        paths += [os.fsencode(os.path.join(name, f)) for f in names]
        labels += [index[name]] * len(names)
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in any class folder of {split_dir}")
    # Numpy arrays rather than lists of Python strings: worker processes read every entry, and
    # touching Python objects in a forked worker copies the pages they live on (refcounts), so
    # a 1.28M-entry list would be duplicated in every worker.
    return np.array(paths, dtype=bytes), np.array(labels, dtype=np.int64)


def locate_splits(name: str, root: str | None, install_hint: str) -> tuple[list[str], dict[str, Path]]:
    """The training class names and the train/val folders, or a DataError naming the path."""
    if root is None:
        raise DataError(f"data={name} needs data.root: it must point at an ImageFolder directory. {install_hint}")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.root not found: {folder} (data={name}). {install_hint}")
    dirs = {split: folder / split for split in SPLITS}
    for split, path in dirs.items():
        if not path.is_dir():
            raise DataError(f"ImageFolder split not found: {path} (data={name}, data.root={folder}). {install_hint}")
    return class_folders(dirs["train"]), dirs


# --- Preprocessing (PIL in, uint8 CHW out) -------------------------------------------------


def crop_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """The random-resized crop's box (left, top, right, bottom) in a width x height image: 8%-100%
    of the area and aspect ratio in [3/4, 4/3] (drawn log-uniformly); the center crop once
    CROP_TRIES draws miss."""
    area = width * height
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(CROP_TRIES):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            break
    else:
        # The whole image, trimmed to the nearest allowed aspect ratio.
        w, h = width, height
        if width / height < CROP_RATIO[0]:
            h = round(width / CROP_RATIO[0])
        elif width / height > CROP_RATIO[1]:
            w = round(height * CROP_RATIO[1])
        left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def random_resized_crop(img: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """A random crop (crop_box) resized to size x size."""
    return img.resize((size, size), Image.BILINEAR, box=crop_box(*img.size, rng))


def draft_for_crop(img: Image.Image, box: tuple[int, int, int, int], size: int) -> float:
    """Before decoding: ask the JPEG decoder for the smallest of 1/8, 1/4, 1/2 scale that still
    leaves `box` (full-image pixels) at least `size` pixels wide and high, so the crop is
    still downsampled to size x size. Returns the factor the image will be reduced by (1: full
    decode; also for non-JPEG files, which PIL decodes at full size)."""
    w, h = box[2] - box[0], box[3] - box[1]
    scale = next((s for s in (8, 4, 2) if w >= s * size and h >= s * size), 1)
    if scale == 1:
        return 1.0
    width, height = img.size
    # PIL picks the largest of 8, 4, 2, 1 <= min(width // request_w, height // request_h): this
    # request makes that `scale` (width // (width // s) lies in [s, 2s)).
    drafted = img.draft("RGB", (width // scale, height // scale))
    return 1.0 if drafted is None else width / drafted[1][2]


def resize_center_crop(img: Image.Image, resize: int, size: int) -> Image.Image:
    """Shorter side to `resize` (aspect kept), then the central size x size crop."""
    width, height = img.size
    if width <= height:
        new = (resize, int(resize * height / width))
    else:
        new = (int(resize * width / height), resize)
    img = img.resize(new, Image.BILINEAR)
    left = int(round((new[0] - size) / 2))
    top = int(round((new[1] - size) / 2))
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a uint8 (3, H, W) tensor (its pixels as they are)."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


# --- Datasets and the training order ------------------------------------------------------


class ImageFiles(Dataset):
    """Images of one split, decoded on access."""

    def __init__(self, split_dir: Path, paths: np.ndarray, labels: np.ndarray):
        self.split_dir, self.paths, self.labels = split_dir, paths, labels

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int, before_decode=None) -> Image.Image:
        """Image i as RGB; `before_decode(img)`, if given, sees the opened file first (its size
        is known, nothing is decoded yet)."""
        path = self.split_dir / os.fsdecode(self.paths[i])
        try:
            with Image.open(path) as img:
                if before_decode is not None:
                    before_decode(img)
                return img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            raise DataError(f"cannot read image {path}: {reason}") from e


class TrainImages(ImageFiles):
    """Augmented training examples, indexed by (epoch, index).

    The random crop and flip of an example are drawn from a generator seeded with (seed,
    epoch, index), not from a worker's global RNG: the same seed gives the same batches
    whatever data.num_workers is. The box is drawn from the file's full size before decoding,
    so `draft` (reduced-size JPEG decoding, draft_for_crop) changes how it is resampled, not
    which box it is.
    """

    def __init__(self, split_dir: Path, paths: np.ndarray, labels: np.ndarray, image_size: int, seed: int,
                 draft: bool = False):
        super().__init__(split_dir, paths, labels)
        self.image_size, self.seed, self.draft = image_size, seed, draft

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        img, label = self.example(key)
        return to_tensor(img), label

    def example(self, key: tuple[int, int]) -> tuple[Image.Image, int]:
        """Training example `key` = (epoch, index), cropped and flipped, and its label."""
        epoch, i = key
        rng = np.random.default_rng([self.seed % 2**64, epoch, i])
        box, scale = None, 1.0

        def before_decode(img: Image.Image) -> None:
            nonlocal box, scale
            box = crop_box(*img.size, rng)
            if self.draft:
                scale = draft_for_crop(img, box, self.image_size)

        img = self.load(i, before_decode)
        size = (self.image_size, self.image_size)
        img = img.resize(size, Image.BILINEAR, box=box if scale == 1 else tuple(c / scale for c in box))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return img, int(self.labels[i])


class EvalImages(ImageFiles):
    """Evaluation examples (validation or test), resized and center-cropped (deterministic)."""

    def __init__(self, split_dir: Path, paths: np.ndarray, labels: np.ndarray, image_size: int, resize: int):
        super().__init__(split_dir, paths, labels)
        self.image_size, self.resize = image_size, resize

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return to_tensor(resize_center_crop(self.load(i), self.resize, self.image_size)), int(self.labels[i])


class EpochSampler(Sampler):
    """(epoch, index) keys of one epoch, in the order `shuffle` prescribes.

    The epoch counter advances on every pass and Lightning sets it at each epoch start
    (set_epoch), so each epoch's order comes from (seed, epoch), seeded as in_memory's
    BatchStream: the same seed reproduces the same sequence of batches. The epoch travels
    with the index because persistent workers hold their own copy of the dataset.
    """

    def __init__(self, n: int, shuffle: str, num_shards: int, seed: int, batch_size: int = 1, rank: int = 0,
                 world: int = 1):
        self.n, self.shuffle, self.num_shards, self.seed = n, shuffle, num_shards, seed
        self.batch_size, self.rank, self.world = batch_size, rank, world  # global batch; data/ranks.py
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def seek(self, batches: int) -> None:
        """Start after `batches` global batches (a resumed run: data/position.py)."""
        self.epoch, skipped = split_position(batches, self.n // self.batch_size)
        self.skip = skipped * (self.batch_size // self.world)  # this rank's examples of those batches

    def __len__(self) -> int:
        return self.n // self.batch_size * self.batch_size // self.world

    def order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return epoch_order(self.shuffle, self.n, self.num_shards, g)

    def __iter__(self):
        epoch, skip = self.epoch, self.skip
        self.epoch, self.skip = epoch + 1, 0
        for i in rank_order(self.order(epoch), self.batch_size, self.rank, self.world)[skip:].tolist():
            yield epoch, i


# --- The data module ----------------------------------------------------------------------


class ImageFolderDataModule(pl.LightningDataModule):
    """An ImageFolder dataset (ImageNet for Sec. 4.2): training on train/ less `val_size`
    held-out images, selection on those, and val/ as the test set beside."""

    channels = 3

    def __init__(
        self,
        name: str,
        root: str | None,
        batch_size: int,
        eval_batch_size: int = 64,
        num_workers: int = 4,
        image_size: int = 224,
        resize: int = 256,
        shuffle: str = "global",
        num_shards: int = 64,
        seed: int = 0,
        install_hint: str = "",
        val_size: int = 10_000,
        val_seed: int = 0,
        draft: bool = False,
    ):
        super().__init__()
        check_val_size(val_size, val_seed)
        if not isinstance(draft, bool):
            raise ConfigError(f"data.draft must be true or false, got {draft!r}")
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                           ("image_size", image_size), ("num_shards", num_shards)):
            if value < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {value}")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        if resize < image_size:
            raise ConfigError(f"data.resize must be >= data.image_size ({image_size}), got {resize}")
        if shuffle not in MODES:
            raise ConfigError(f"data.shuffle must be one of {MODES}, got {shuffle!r}")
        self.name, self.root = name, root
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.image_size, self.resize = image_size, resize
        self.shuffle, self.num_shards, self.seed, self.draft = shuffle, num_shards, seed, draft

        self.classes, self.dirs = locate_splits(name, root, install_hint)
        train_dir, test_dir = self.dirs["train"], self.dirs["val"]
        test_folders = class_folders(test_dir)
        unknown = sorted(set(test_folders) - set(self.classes))
        if unknown:
            raise DataError(f"{test_dir / unknown[0]}: class folder {unknown[0]!r} has no counterpart in {train_dir}")
        # An empty training class would still take an output unit but never be trained.
        paths, labels = scan_split(train_dir, self.classes, self.classes, allow_empty=False)
        if len(labels) < batch_size:
            raise DataError(f"{train_dir} has {len(labels)} images, fewer than data.batch_size={batch_size}")
        check_split(len(labels), val_size, batch_size, train_dir)
        train, val = (i.numpy() for i in split_indices(len(labels), val_size, val_seed))
        self.train_files, self.val_files = (paths[train], labels[train]), (paths[val], labels[val])  # both of train/
        self.test_files = scan_split(test_dir, self.classes, test_folders, allow_empty=True)

        self.num_classes = len(self.classes)
        self.in_shape = (3, image_size, image_size)
        self.train_set: TrainImages | None = None
        self.val_set: EvalImages | None = None
        self.test_set: EvalImages | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = TrainImages(self.dirs["train"], *self.train_files, self.image_size, self.seed,
                                         self.draft)
            self.val_set = EvalImages(self.dirs["train"], *self.val_files, self.image_size, self.resize)
            self.test_set = EvalImages(self.dirs["val"], *self.test_files, self.image_size, self.resize)

    def split_sizes(self) -> dict[str, int]:
        """Images trained on, selected on (validation, of train/) and reported beside (test: val/)."""
        return {"train_size": len(self.train_files[1]), "val_size": len(self.val_files[1]),
                "test_size": len(self.test_files[1])}

    def train_sampler(self) -> EpochSampler:
        return EpochSampler(len(self.train_files[1]), self.shuffle, self.num_shards, self.seed, self.batch_size,
                            *rank_and_world(self.trainer))

    def train_dataloader(self) -> DataLoader:
        self.setup()
        _, world = rank_and_world(self.trainer)
        return ResumableLoader(
            self.train_set, batch_size=per_rank_batch(self.batch_size, world), sampler=self.train_sampler(),
            num_workers=self.num_workers, drop_last=True,
            persistent_workers=self.num_workers > 0, pin_memory=False,
            position=trained_batches(self), seed=self.seed,
        )

    def val_dataloader(self) -> list[DataLoader]:
        """[validation, test] (bnbench.keys.EVAL_SETS), each split over ranks in contiguous blocks."""
        self.setup()
        loaders = []
        for images in (self.val_set, self.test_set):
            start, stop = eval_block(len(images), *rank_and_world(self.trainer))
            loaders.append(DataLoader(
                Subset(images, range(start, stop)), batch_size=self.eval_batch_size, shuffle=False,
                num_workers=self.num_workers, drop_last=False,
                persistent_workers=self.num_workers > 0, pin_memory=False,
            ))
        return loaders

    def train_order(self, epoch: int) -> torch.Tensor:
        """The order in which training epoch `epoch` reads the examples."""
        return self.train_sampler().order(epoch)

    def fixed_batch(self, n: int) -> torch.Tensor:
        """The first n test images (val/), uint8 as the loader sends them: the fixed batch the
        activation probe looks at (through Classifier.model_input, as every batch)."""
        self.setup()
        return torch.stack([self.test_set[i][0] for i in range(min(n, len(self.test_set)))])
