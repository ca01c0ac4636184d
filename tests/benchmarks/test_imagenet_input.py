"""The ImageNet input path (data=imagenet), measured on generated ImageNet-like JPEGs; nothing
asserts a time. Printed lines start with [bench]; figures also go to benchmark.extra_info.

    make bench     (pytest -o addopts="" tests/benchmarks --benchmark-only -s)

The images: about 500x375 (1 in 5 portrait), JPEG quality 90, ~110 KB each, in the ImageFolder
layout bnbench/data/imagefolder.py reads (train/<class>/, val/<class>/), generated once per
session: a 1/f luminance field plus fine noise and smoother colour, so the file size (hence
the entropy decoder's work) is that of a photograph's, not of a flat test pattern's. A second,
smaller set at 1000x750 shows what reduced-size decoding (data.draft) buys where it can apply.
The files sit in the page cache: disk reads are not measured.

On the CPU (one torch thread, as a DataLoader worker has): one training example (open, decode,
random-resized crop to 224, flip, uint8 tensor) with full decoding against data.draft, and
against a crop-blind draft as other loaders do it; the real data module's train dataloader at
0, 1 and 2 workers; the photometric distortions of the recipe (they run batched on the
training device, in Classifier.on_after_batch_transfer, not in the loader: their CPU cost is
shown for scale); uint8 batches (what the loader sends, scaled on the device) against float32
(what it sent before 2026-12-01: bytes to collate and copy). Per core means
per CPU-second: the CPU time the candidate's processes used (this one and its DataLoader
workers), which a busy machine inflates far less than wall time; wall images/s is printed
beside, with the load average.

On a CUDA device (-m gpu; skipped without one): BN-Inception trained through the harness at
batch 128, bf16-mixed, channels_last, fed by data=imagenet (these files, every core but two
decoding) against data=synthetic (batches made on the device), steady-state images/s; and
data=imagenet with a pinned-memory loader (asynchronous copies to the device; the data module
does not pin). nvJPEG / DALI (decoding on the GPU) are not tried: bnbench's loaders are PIL on
CPU workers.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bnbench.data.imagefolder import (ImageFolderDataModule, TrainImages, crop_box, draft_for_crop, scan_split,
                                      to_tensor)
from timing import gpu_overrides, one_thread, report, seconds_per_step  # noqa: F401 (one_thread: a fixture)

SIZE = (500, 375)        # ImageNet's typical training image (width, height); 1 in 5 portrait
LARGE = (1000, 750)      # where reduced-size decoding can apply
QUALITY = 90
CLASSES = 4
PER_CLASS = 75           # training images per class: 300 in all (+ 4 per class in val/)
CROP = 224


# --- The generated images -----------------------------------------------------------------


def field(rng: np.random.Generator, width: int, height: int, alpha: float) -> np.ndarray:
    """A zero-mean, unit-variance random field with a 1/f^alpha amplitude spectrum."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    amp = f ** -alpha
    amp[0, 0] = 0.0
    spectrum = amp * (rng.normal(size=amp.shape) + 1j * rng.normal(size=amp.shape))
    x = np.fft.irfft2(spectrum, s=(height, width))
    return (x - x.mean()) / x.std()


def natural_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Photograph-like statistics: 1/f luminance with a little sensor noise, smoother colour."""
    y = field(rng, width, height, rng.uniform(1.0, 1.1)) * 50 + rng.uniform(90, 160)
    y += rng.normal(0, 2, y.shape)
    cb = field(rng, width, height, 1.6) * 18 + rng.uniform(110, 146)
    cr = field(rng, width, height, 1.6) * 18 + rng.uniform(110, 146)
    ycc = np.clip(np.stack([y, cb, cr], -1), 0, 255).astype(np.uint8)
    return Image.fromarray(ycc, "YCbCr").convert("RGB")


def write_imagefolder(root: Path, size: tuple[int, int], classes: int, per_class: int, val_per_class: int,
                      seed: int) -> Path:
    rng = np.random.default_rng(seed)
    k = 0
    for c in range(classes):
        for split, n in (("train", per_class), ("val", val_per_class)):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for j in range(n):
                w, h = size if k % 5 else size[::-1]
                natural_image(rng, w, h).save(folder / f"img{j:04d}.JPEG", quality=QUALITY)
                k += 1
    return root


def replicate(root: Path, out: Path, copies: int) -> Path:
    """An ImageFolder of `copies` symbolic links to each training file of `root` (val/ linked
    once): epochs long enough that a measurement never crosses one, at no extra disk."""
    for split in ("train", "val"):
        for folder in sorted((root / split).iterdir()):
            dest = out / split / folder.name
            dest.mkdir(parents=True)
            for f in sorted(folder.iterdir()):
                for c in range(copies if split == "train" else 1):
                    (dest / f"{f.stem}_{c:03d}{f.suffix}").symlink_to(f)
    return out


def mean_kb(root: Path) -> float:
    sizes = [f.stat().st_size for f in root.rglob("*.JPEG") if not f.is_symlink()]
    return statistics.mean(sizes) / 1e3


@pytest.fixture(scope="session")
def imagenet_like(tmp_path_factory) -> Path:
    t = time.perf_counter()
    root = write_imagefolder(tmp_path_factory.mktemp("imagenet_like"), SIZE, CLASSES, PER_CLASS, 4, seed=0)
    n = sum(1 for _ in root.rglob("*.JPEG"))
    print(f"\n[bench] generated {n} JPEGs of {SIZE[0]}x{SIZE[1]} (1 in 5 portrait), quality {QUALITY}: "
          f"mean {mean_kb(root):.1f} KB ({time.perf_counter() - t:.1f} s)")
    return root


@pytest.fixture(scope="session")
def large_images(tmp_path_factory) -> Path:
    root = write_imagefolder(tmp_path_factory.mktemp("large_images"), LARGE, 2, 16, 1, seed=1)
    print(f"\n[bench] generated 34 JPEGs of {LARGE[0]}x{LARGE[1]}, quality {QUALITY}: mean {mean_kb(root):.1f} KB")
    return root


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/benchmarks/timing.py


def training_set(root: Path, draft: bool, kind: type[TrainImages] = TrainImages) -> TrainImages:
    """The training examples of an ImageFolder as the data module makes them (seed 0)."""
    classes = sorted(p.name for p in (root / "train").iterdir())
    paths, labels = scan_split(root / "train", classes, classes, allow_empty=False)
    return kind(root / "train", paths, labels, CROP, 0, draft)


def interleaved(fns: dict[str, Callable[[], tuple[float, ...]]], rounds: int) -> tuple[dict[str, float], ...]:
    """The candidates run round by round like timing.side_by_side, but each times itself (a
    warm-up can stay off the clock) and returns a tuple of figures: per figure, the medians."""
    values = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            values[name].append(fn())
    width = len(next(iter(values.values()))[0])
    return tuple({k: statistics.median(v[j] for v in vs) for k, vs in values.items()} for j in range(width))


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of this process and of the processes `pids` (Linux /proc)."""
    total = time.process_time()
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def cpu_and_wall(fns: dict[str, Callable[[], None]], rounds: int, per: int) -> tuple[dict, dict]:
    """Seconds per item (a call does `per` items) of each candidate, CPU time of this process
    and wall time, interleaved round by round: medians. On a busy machine the CPU time is the
    per-core cost; wall time also counts the waits for a core."""
    def timed(fn):
        def run():
            c, t = time.process_time(), time.perf_counter()
            fn()
            return (time.process_time() - c) / per, (time.perf_counter() - t) / per
        return run

    return interleaved({name: timed(fn) for name, fn in fns.items()}, rounds)


def per_s(seconds_per_image: dict[str, float]) -> str:
    return ", ".join(f"{k} {1 / v:.0f}" for k, v in seconds_per_image.items())


def load_note() -> str:
    return f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


# --- One training example: full decoding, data.draft, and a crop-blind draft ---------------


class CropBlindDraft(TrainImages):
    """For comparison only: `img.draft("RGB", (224, 224))` on the whole image, whatever the
    crop, as many loaders do. The box is the same, but a small crop of a reduced image has
    fewer than 224 source pixels each way and is upsampled: detail the file had is lost."""

    def __getitem__(self, key):
        epoch, i = key
        rng = np.random.default_rng([self.seed % 2**64, epoch, i])
        box, scale = None, 1.0

        def before_decode(img):
            nonlocal box, scale
            width = img.size[0]
            box = crop_box(*img.size, rng)
            drafted = img.draft("RGB", (CROP, CROP))
            scale = 1.0 if drafted is None else width / drafted[1][2]

        img = self.load(i, before_decode)
        img = img.resize((CROP, CROP), Image.BILINEAR, box=tuple(c / scale for c in box))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return to_tensor(img), int(self.labels[i])


def reductions(images: TrainImages, keys: list[tuple[int, int]]) -> tuple[float, float]:
    """Of these examples' crops: the fraction data.draft decodes at reduced size, and the
    fraction the crop-blind draft decodes to fewer than 224 pixels across (then upsampled)."""
    drafted = blind_small = 0
    for epoch, i in keys:
        rng = np.random.default_rng([images.seed % 2**64, epoch, i])
        with Image.open(images.split_dir / os.fsdecode(images.paths[i])) as img:
            width, height = img.size
            box = crop_box(width, height, rng)
            drafted += draft_for_crop(img, box, CROP) > 1
        blind = next((s for s in (8, 4, 2, 1) if min(width // CROP, height // CROP) >= s), 1)
        blind_small += blind > 1 and min(box[2] - box[0], box[3] - box[1]) / blind < CROP
    return drafted / len(keys), blind_small / len(keys)


@pytest.mark.parametrize("images", ["imagenet_like", "large_images"])
def test_one_example_full_decode_against_draft(benchmark, request, images):
    """One training example, open to float tensor, on one core: data.draft=false against true,
    and the crop-blind draft (third, for scale). The same 24 examples in every round; the
    fractions of crops reduced count every image's crops of 4 epochs."""
    root = request.getfixturevalue(images)
    sets = {"full": training_set(root, draft=False), "draft": training_set(root, draft=True),
            "crop_blind_draft": training_set(root, draft=False, kind=CropBlindDraft)}
    keys = [(epoch, i) for epoch in range(3) for i in range(0, len(sets["full"]), len(sets["full"]) // 8)][:24]
    drafted, blind_small = reductions(sets["draft"], [(e, i) for e in range(4) for i in range(len(sets["draft"]))])

    def load_all(ds):
        for key in keys:
            ds[key]

    fns = {name: (lambda ds=ds: load_all(ds)) for name, ds in sets.items()}
    cpu, wall = cpu_and_wall(fns, rounds=7, per=len(keys))
    width, height = SIZE if images == "imagenet_like" else LARGE
    report(benchmark, f"one training example, {width}x{height} JPEG -> 224 crop, CPU time per image", cpu,
           unit="ms", scale=1e3)
    print(f"[bench] images per CPU-second: {per_s(cpu)}; wall images/s: {per_s(wall)} ({load_note()}); "
          f"crops data.draft decodes reduced: {drafted:.0%}; crop-blind draft decodes below 224 px (then "
          f"upsamples): {blind_small:.0%}")
    benchmark.extra_info.update({"images_per_cpu_s": {k: 1 / v for k, v in cpu.items()},
                                 "images_per_wall_s": {k: 1 / v for k, v in wall.items()},
                                 "draft_reduced_fraction": drafted, "crop_blind_upsampled_fraction": blind_small})
    benchmark.pedantic(load_all, args=(sets["draft"],), rounds=1, iterations=1)


def test_decode_and_augment_parts(benchmark, imagenet_like):
    """Where one example's time goes (one core): decoding, the crop's resize, the rest."""
    path = next((imagenet_like / "train").rglob("*.JPEG"))
    with Image.open(path) as img:
        decoded = img.convert("RGB")
    rng = np.random.default_rng(0)
    crop = decoded.resize((CROP, CROP), Image.BILINEAR, box=crop_box(*decoded.size, rng))

    def decode():
        with Image.open(path) as img:
            img.convert("RGB")

    fns = {"decode": decode,
           "crop_resize": lambda: decoded.resize((CROP, CROP), Image.BILINEAR, box=crop_box(*decoded.size, rng)),
           "flip_to_tensor": lambda: to_tensor(crop.transpose(Image.FLIP_LEFT_RIGHT))}
    cpu, _ = cpu_and_wall({k: (lambda fn=fn: [fn() for _ in range(20)]) for k, fn in fns.items()}, rounds=15, per=20)
    report(benchmark, f"parts of one example ({decoded.size[0]}x{decoded.size[1]}), CPU time", cpu, unit="ms",
           scale=1e3)
    benchmark.pedantic(decode, rounds=1, iterations=1)


# --- The real data module's train dataloader -------------------------------------------------


def as_float32(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as float32 (3, H, W) in [0, 1]: what the loader sent before 2026-12-01."""
    return to_tensor(img).float().div_(255.0)


class Float32Images(TrainImages):
    """For comparison only: the same training examples as float32 tensors in [0, 1] (four times
    the bytes per batch of the loader's uint8; the data module sent these before 2026-12-01)."""

    def __getitem__(self, key):
        img, label = self.example(key)
        return as_float32(img), label


def loader_seconds_per_image(root: Path, workers: int, batch: int, batches: int, draft: bool = False,
                             float32: bool = False) -> tuple[float, float]:
    """Steady-state (CPU, wall) seconds per image of ImageFolderDataModule's train dataloader;
    CPU: this process and its workers together. The first max(workers, 1) batches (workers
    starting, the pipeline filling) are off the clock; the loader and its workers are gone
    before the next candidate runs. `float32`: its examples as Float32Images."""
    dm = ImageFolderDataModule(name="imagenet", root=str(root), batch_size=batch, eval_batch_size=batch,
                               num_workers=workers, image_size=CROP, resize=256, val_size=8, draft=draft)
    dm.setup()
    if float32:
        t = dm.train_set
        dm.train_set = Float32Images(t.split_dir, t.paths, t.labels, t.image_size, t.seed, t.draft)
    loader = dm.train_dataloader()
    it = iter(loader)
    for _ in range(max(workers, 1)):
        next(it)
    pids = [w.pid for w in getattr(it, "_workers", [])]  # DataLoader's worker processes
    c, t = cpu_seconds(pids), time.perf_counter()
    n = sum(len(next(it)[1]) for _ in range(batches))
    cpu, wall = cpu_seconds(pids) - c, time.perf_counter() - t
    del it, loader
    gc.collect()
    return cpu / n, wall / n


@pytest.fixture(scope="session")
def long_epochs(imagenet_like, tmp_path_factory) -> Path:
    return replicate(imagenet_like, tmp_path_factory.mktemp("imagenet_like_x4"), copies=4)


def test_train_loader_images_per_s_per_core(benchmark, long_epochs):
    """data=imagenet's train dataloader (decode, crop, flip, tensors, collation; batch 32) at
    num_workers 0 (all in this process), 1 and 2, and at 1 with float32 batches, side by side, 3
    rounds of 10 batches each. Per core: images per CPU-second of this process and its workers
    together (on a busy machine wall time mostly measures the wait for a core); wall images/s
    beside."""
    batch, batches = 32, 10
    fns = {f"{w}_workers": (lambda w=w: loader_seconds_per_image(long_epochs, w, batch, batches)) for w in (0, 1, 2)}
    fns["1_workers_float32"] = lambda: loader_seconds_per_image(long_epochs, 1, batch, batches, float32=True)
    cpu, wall = interleaved(fns, rounds=3)
    report(benchmark, f"train dataloader, batch {batch}, CPU time per image", cpu, unit="ms", scale=1e3)
    print(f"[bench] images per CPU-second (per core): {per_s(cpu)}; wall images/s: {per_s(wall)} ({load_note()})")
    benchmark.extra_info.update({"images_per_cpu_s": {k: 1 / v for k, v in cpu.items()},
                                 "images_per_wall_s": {k: 1 / v for k, v in wall.items()},
                                 "loadavg": os.getloadavg()[0]})
    benchmark.pedantic(loader_seconds_per_image, args=(long_epochs, 0, batch, 2), rounds=1, iterations=1)


# --- What the loader does not do, for scale --------------------------------------------------


def test_photometric_distortion_on_the_cpu(benchmark, imagenet_like):
    """The recipe's colour jitter (recipe/imagenet_bn_inception.yaml: brightness, contrast,
    saturation 0.4, hue 0.1; kornia, per example) on a batch of 32 at 224 on one core, against
    loading the same 32 examples. In a run it is applied on the training device."""
    from omegaconf import OmegaConf

    from bnbench.data.distort import build_distortion

    recipe = OmegaConf.load(Path(__file__).parents[2] / "conf" / "recipe" / "imagenet_bn_inception.yaml")
    jitter = build_distortion(3, **recipe.distortion)
    images = training_set(imagenet_like, draft=False)
    x = torch.stack([images[(0, i)][0] for i in range(32)]).float().div_(255.0)  # as Classifier.model_input
    torch.manual_seed(0)

    def load():
        for i in range(32):
            images[(0, i)]

    cpu, _ = cpu_and_wall({"colour_jitter": lambda: jitter(x), "load": load}, rounds=5, per=32)
    report(benchmark, "recipe's colour jitter (kornia, CPU) against loading, CPU time per image", cpu, unit="ms",
           scale=1e3)
    benchmark.pedantic(jitter, args=(x,), rounds=1, iterations=1)


def test_float32_against_uint8_batches(benchmark):
    """A batch of 128 crops to tensor and collated: uint8 (what the loader sends the device, where
    Classifier.model_input scales it) against float32 in [0, 1] (four times the bytes; sent before
    2026-12-01)."""
    rng = np.random.default_rng(0)
    crops = [Image.fromarray(rng.integers(0, 256, (CROP, CROP, 3), dtype=np.uint8)) for _ in range(128)]
    fns = {"float32": lambda: torch.stack([as_float32(c) for c in crops]),
           "uint8": lambda: torch.stack([to_tensor(c) for c in crops])}
    cpu, _ = cpu_and_wall(fns, rounds=9, per=128)
    report(benchmark, "to tensor and collate, batch 128, CPU time per image", cpu)
    mb = {k: 128 * 3 * CROP * CROP * size / 1e6 for k, size in (("float32", 4), ("uint8", 1))}
    print(f"[bench] bytes per batch of 128: float32 {mb['float32']:.0f} MB, uint8 {mb['uint8']:.0f} MB "
          f"(at 3,366 images/s: {mb['float32'] * 3366 / 128 / 1e3:.1f} GB/s and "
          f"{mb['uint8'] * 3366 / 128 / 1e3:.1f} GB/s host to device)")
    benchmark.pedantic(fns["uint8"], rounds=1, iterations=1)


# --- On a CUDA device: BN-Inception fed by data=imagenet against data=synthetic --------------


GPU_BATCH, WARMUP, MEASURED = 128, 30, 100


def imagenet_data(root: Path, workers: int) -> list[str]:
    return ["data=imagenet", f"data.root={root}", f"data.num_workers={workers}", "data.val_size=128"]


@pytest.fixture(scope="session")
def gpu_epochs(imagenet_like, tmp_path_factory) -> Path:
    """An epoch of 300 x 64 = 19,200 links (less 128 held out): 149 batches of 128, more than a
    measurement reads (WARMUP + MEASURED), so none crosses an epoch's end."""
    return replicate(imagenet_like, tmp_path_factory.mktemp("imagenet_like_x64"), copies=64)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_bn_inception_fed_by_imagenet_against_synthetic(benchmark, gpu_epochs, tmp_path):
    """Images/s of BN-Inception training (batch 128, bf16-mixed, channels_last; the harness's
    Classifier with the recipe's on-device distortions) fed by data=imagenet against
    data=synthetic, side by side, 2 rounds; goal: imagenet/synthetic >= 0.90. Also imagenet
    with a pinned-memory loader. Workers: every core but two (data.num_workers)."""
    from test_gpu_throughput import images_per_s

    workers = max(1, len(os.sched_getaffinity(0)) - 2)
    runs = {"synthetic": gpu_overrides(["data=synthetic"], tmp_path),
            "imagenet": gpu_overrides(imagenet_data(gpu_epochs, workers), tmp_path)}
    fns = {name: (lambda o=o: (seconds_per_step(o, WARMUP, MEASURED),)) for name, o in runs.items()}
    fns["imagenet_pinned"] = lambda: (seconds_per_step(runs["imagenet"], WARMUP, MEASURED, pinned=True),)
    medians, = interleaved(fns, rounds=2)
    report(benchmark, f"BN-Inception step, batch {GPU_BATCH}, bf16-mixed, {torch.cuda.get_device_name()}", medians,
           unit="ms", scale=1e3)
    images_per_s(benchmark, GPU_BATCH, medians)
    ratio = {k: medians["synthetic"] / medians[k] for k in ("imagenet", "imagenet_pinned")}
    benchmark.extra_info.update({f"ratio_{k}_over_synthetic": v for k, v in ratio.items()})
    benchmark.extra_info["workers"] = workers
    print(f"[bench] images/s, data=imagenet / data=synthetic: {ratio['imagenet']:.3f} (goal >= 0.90), "
          f"pinned loader: {ratio['imagenet_pinned']:.3f}; {workers} decoding workers, "
          f"{GPU_BATCH / medians['imagenet'] / workers:.0f} images/s per worker")
    benchmark.pedantic(seconds_per_step, args=(runs["imagenet"], 5, 5), rounds=1, iterations=1)
