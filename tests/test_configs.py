"""Every option of every config group composes, builds and runs a forward pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf.errors import OmegaConfBaseException

from bnbench.cli import CONF_DIR
from bnbench.train import build
from conftest import compose

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("hydra", "recipe"))
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]


def extra_overrides(group: str, option: str, tiny: Path, folder: Path) -> list[str]:
    """Companion choices an option needs (its data, or a model where the toggle matters)."""
    if (group, option) in (("data", "imagenet"), ("model", "bn_inception")):
        return ["data=imagenet", "model=bn_inception", f"data.root={folder}", "data.image_size=32",
                "data.resize=36", "data.num_workers=0", "recipe.batch_size=4", "data.val_size=2"]
    if (group, option) == ("data", "synthetic"):
        return ["model=bn_inception", "data.in_shape=[3,32,32]", "recipe.batch_size=4", "data.eval_batches=1",
                "data.val_batches=1"]
    overrides = [f"data.root={tiny}"]
    if group not in ("model", "experiment", "data"):
        overrides.append("model=inception_mini")  # where LRN, dropout and distortions exist
    return overrides


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("imagefolder")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 4), ("val", 2)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 256, (40, 48, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(root / split / c / f"{i}.jpg")
    return root


def test_every_group_has_options():
    assert {"data", "model", "norm", "lr", "dropout", "l2", "lr_decay", "lrn", "shuffle", "distort",
            "trainer", "logger", "experiment"} <= set(GROUPS)
    assert len(OPTIONS) >= 30


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(group, option, tiny_data, tiny_folder):
    overrides = [f"{group}={option}", *extra_overrides(group, option, tiny_data, tiny_folder)]
    if group == "experiment":
        overrides = [o for o in overrides if not o.startswith("model=")]
    cfg = compose(overrides)
    parts = build(cfg)
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False, callbacks=[])
    assert trainer.max_steps == cfg.recipe.steps
    parts.datamodule.setup()
    x, y = next(iter(parts.datamodule.train_dataloader()))
    assert len(x) == cfg.data.batch_size * parts.system.steps_per_batch  # in-memory data: grouped (auto)
    parts.system.model.eval()
    with torch.no_grad():
        logits = parts.system.model(parts.system.model_input(x))  # as on_after_batch_transfer gives it
    assert logits.shape == (len(x), parts.datamodule.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (CONF_DIR / "recipe").glob("*.yaml")))
def test_every_recipe_is_reachable(recipe):
    """A recipe is picked as <data>_<model>: both parts must be options of their groups."""
    data_options = {p.stem for p in (CONF_DIR / "data").glob("*.yaml")}
    model_options = {p.stem for p in (CONF_DIR / "model").glob("*.yaml")}
    assert any(recipe == f"{d}_{m}" for d in data_options for m in model_options), recipe


def test_pair_without_recipe_names_the_missing_recipe():
    with pytest.raises(HydraException, match="recipe/fashion_mnist_bn_inception"):
        compose(["model=bn_inception"])


@pytest.mark.parametrize("override", ["seed=abc", "recipe.lr=fast", "run.eval_every=1.5", "recipe.typo=1",
                                      "trainer.not_a_key=1"])
def test_schema_rejects_bad_types_and_unknown_keys(override):
    with pytest.raises((HydraException, OmegaConfBaseException)):
        compose([override])


def test_experiment_picks_options_and_command_line_wins(tiny_data):
    cfg = compose(["experiment=bn_x5", "model=mlp", f"data.root={tiny_data}"])
    assert cfg.model._target_.endswith("MLP")  # the command line beats the experiment's choice
    assert cfg.norm.kind == "batch" and cfg.lr.scale == 5.0 and cfg.shuffle.mode == "within_shard"


def test_user_can_override_trainer_keys():
    cfg = compose(["trainer.max_steps=123", "trainer.val_check_interval=7"])
    assert cfg.trainer.max_steps == 123 and cfg.trainer.val_check_interval == 7


def test_schema_choices_are_the_names_the_code_knows():
    from bnbench import schema
    from bnbench.data.ordering import MODES
    from bnbench.nn.batchnorm import KERNELS, STATS
    from bnbench.nn.norm import IMPLS, INFERENCE, KINDS

    assert (schema.NORM_KINDS, schema.NORM_IMPLS, schema.NORM_INFERENCE, schema.NORM_STATS, schema.SHUFFLE_MODES,
            schema.NORM_KERNELS) == (KINDS, IMPLS, INFERENCE, STATS, MODES, KERNELS)
    for enum, names in ((schema.NormStats, STATS), (schema.ShuffleMode, MODES), (schema.LoggerMode, schema.LOGGER_MODES)):
        assert tuple(enum.__members__) == names and all(enum[n] == n and f"{enum[n]}" == n for n in names)


def test_composed_choices_read_as_plain_names(tiny_data):
    """A Choice compares, formats and serializes as its name: the record and run id are unchanged."""
    import json

    from omegaconf import OmegaConf

    cfg = compose(["norm=batch", "shuffle=within_shard", "logger=none"])
    assert cfg.norm.kind == "batch" and f"{cfg.norm.stats}" == "device" and str(cfg.shuffle.mode) == "within_shard"
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert json.loads(json.dumps(resolved))["norm"] == {**resolved["norm"]} and \
        json.dumps(resolved["shuffle"]) == '{"mode": "within_shard"}'
    assert OmegaConf.to_yaml(cfg.norm).startswith("kind: batch\nimpl: torch\n")


def test_norm_kernel_reaches_the_own_bn_and_is_checked():
    """norm.kernel (conf/norm/batch.yaml): the own BN's implementation; a closed set; bnbench's BN only."""
    from bnbench.errors import ConfigError
    from bnbench.nn.norm import create_norm

    assert compose(["norm=batch"]).norm.kernel == "fast"
    layer = create_norm(**compose(["norm=batch", "norm.impl=bnbench", "norm.kernel=reference"]).norm)(7, True)
    assert layer.kernel == "reference"
    with pytest.raises(HydraException, match="norm.kernel=triton"):
        compose(["norm=batch", "norm.impl=bnbench", "norm.kernel=triton"])
    with pytest.raises(ConfigError, match="norm.kernel=compiled.*norm.impl=bnbench"):
        create_norm(**compose(["norm=batch", "norm.kernel=compiled"]).norm)


@pytest.mark.parametrize("model,asked,expected", [
    ("inception_mini", None, True),  # auto: convolutions on CPU -> NHWC
    ("mlp", None, False),  # auto: no convolution
    ("inception_mini", False, False),  # said: kept
])
def test_channels_last_auto_resolves_and_leaves_the_config_as_asked(tiny_data, model, asked, expected):
    cfg = compose([f"model={model}", f"data.root={tiny_data}", "trainer.accelerator=cpu",
                   f"run.channels_last={'null' if asked is None else str(asked).lower()}"])
    system = build(cfg).system
    system.setup("fit")
    assert system.channels_last is expected and cfg.run.channels_last is asked  # the run's identity: as asked
    convs = [m.weight for m in system.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert (len(convs) > 0) == (model == "inception_mini")
    assert all(w.is_contiguous(memory_format=torch.channels_last) == expected
               for w in convs if w.shape[1] > 1 and w.shape[-1] > 1)  # else both layouts coincide
