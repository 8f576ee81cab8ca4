"""Config loading: YAML + overrides, strict keys with suggestions, types, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from gsag.config import Config, ConfigError, load_config, save_config
from gsag.models import list_models

CONFIGS = sorted(Path(__file__).resolve().parent.parent.joinpath("configs").glob("*.yaml"))
#: the ResNet OHEM recipes (ConvNeXt-T / Swin-T ones: tests/test_configs_modern.py; the `*_ce`
#: twins and every recipe's row: tests/test_recipes.py)
RESNET_CONFIGS = [
    p
    for p in CONFIGS
    if "_convnext_tiny_" not in p.name and "_swin_tiny_" not in p.name and p.stem[-3:] != "_ce"
]


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_run_dir_from_file_name(tmp_path):
    path = write(tmp_path, "train:\n  iters: 123\n", name="my_exp.yaml")
    cfg = load_config(path)
    assert cfg.train.iters == 123
    assert cfg.train.batch_size == Config().train.batch_size  # untouched keys keep defaults
    assert Path(cfg.output.run_dir) == Path("runs/my_exp")


def test_overrides_parse_values_as_yaml(tmp_path):
    path = write(tmp_path, "optim:\n  lr: 0.02\n")
    cfg = load_config(
        path,
        [
            "optim.lr=1e-3",  # PyYAML reads this as a string; a float field converts it
            "train.amp=bf16",
            "model.pretrained=false",
            "eval.scales=[0.5, 1]",
            "model.kwargs.num_heads=4",
            "output.run_dir=/tmp/x",
        ],
    )
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.train.amp == "bf16"
    assert cfg.model.pretrained is False
    assert cfg.eval.scales == [0.5, 1.0] and all(isinstance(s, float) for s in cfg.eval.scales)
    assert cfg.model.kwargs == {"num_heads": 4}
    assert cfg.output.run_dir == "/tmp/x"


def test_pretrained_accepts_bool_or_path(tmp_path):
    assert load_config(None, ["model.pretrained=true"]).model.pretrained is True
    assert load_config(None, ["model.pretrained=w/r50.pth"]).model.pretrained == "w/r50.pth"


@pytest.mark.parametrize(
    ("text", "override", "expected"),
    [
        ("trian:\n  iters: 1\n", None, "did you mean train?"),
        ("train:\n  itres: 1\n", None, "did you mean train.iters?"),
        (None, "optim.momentun=0.5", "did you mean optim.momentum?"),
        (None, "schedual.power=1", "did you mean schedule?"),
    ],
)
def test_unknown_keys_suggest_nearest(tmp_path, text, override, expected):
    path = write(tmp_path, text) if text else None
    with pytest.raises(ConfigError, match=expected.replace("?", r"\?")):
        load_config(path, [override] if override else [])


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.iters=ten", "train.iters is 'ten'; expected int"),
        ("train.amp=fp8", "train.amp is 'fp8'; it must be one of auto, bf16, fp16, none"),
        ("train.iters=0", "train.iters is 0; it must be >= 1"),
        ("data.mean=[0.5, 0.5]", "data.mean is [0.5, 0.5]; it must be in [0, 1], a list of 0 or 3"),
        ("train.batch_size=6", "not divisible by train.accum_steps"),
        ("train.iters", "must look like section.key=value"),
    ],
)
def test_bad_values_are_named(override, fragment):
    overrides = [override] + (["train.accum_steps=4"] if "batch_size" in override else [])
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert fragment in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [1, 2\n"))


def test_saved_config_loads_back_equal(tmp_path):
    cfg = load_config(None, ["train.iters=7", "model.kwargs.dropout=0.2", "eval.flip=true"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.output.run_dir == str(Path("runs") / path.stem)


def test_voc_recipe_configs_follow_the_recipe():
    voc = [p for p in RESNET_CONFIGS if p.name.startswith("voc_")]
    assert len(voc) == 6 * len(list_models())  # 3 ResNets x 20k / 40k per model
    for path in voc:
        cfg = load_config(path)
        assert (cfg.data.crop_size, cfg.train.batch_size, cfg.optim.lr) == (512, 16, 0.01)
        assert (cfg.optim.momentum, cfg.optim.weight_decay) == (0.9, 5e-4)
        assert (cfg.schedule.power, cfg.schedule.min_lr) == (0.9, 1e-4)
        assert cfg.train.iters == (20_000 if path.stem.endswith("20k") else 40_000)
        assert (cfg.loss.aux_weight, cfg.train.eval_interval) == (0.4, 2_000)
        assert cfg.data.train_split == "train_aug"
        assert path.stem == f"voc_{cfg.model.name}_{cfg.model.backbone}_{cfg.train.iters // 1000}k"


@pytest.mark.parametrize(
    ("prefix", "per_model", "crop", "batch", "lr", "iters", "eval_mode"),
    [
        ("cityscapes", 2, [512, 1024], 8, 0.01, {80_000}, "whole"),
        ("ade20k", 4, 512, 16, 0.01, {80_000, 160_000}, "whole"),
        ("context59", 4, 480, 16, 0.004, {40_000, 80_000}, "slide"),
        ("context60", 4, 480, 16, 0.004, {40_000, 80_000}, "slide"),
    ],
)
def test_dataset_recipe_configs(prefix, per_model, crop, batch, lr, iters, eval_mode):
    paths = [p for p in RESNET_CONFIGS if p.name.startswith(f"{prefix}_")]
    assert len(paths) == per_model * len(list_models())  # ResNet-50 / 101 x schedules
    for path in paths:
        cfg = load_config(path)
        assert (cfg.data.layout, cfg.data.crop_size, cfg.data.scale_range) == (
            prefix,
            crop,
            [0.5, 2.0],
        )
        assert (cfg.train.batch_size, cfg.optim.lr, cfg.eval.mode) == (batch, lr, eval_mode)
        assert cfg.train.iters in iters and cfg.model.backbone in ("resnet50", "resnet101")
        assert (
            path.stem
            == f"{prefix}_{cfg.model.name}_{cfg.model.backbone}_{cfg.train.iters // 1000}k"
        )
    base = {"cityscapes": [2048, 1024], "ade20k": [2048, 512]}.get(prefix, [520, 520])
    assert cfg.data.base_size == base


def test_crop_sizes_take_height_and_width():
    cfg = load_config(None, ["data.crop_size=[512, 1024]", "eval.stride=[341, 682]"])
    assert (cfg.data.crop_size, cfg.eval.stride) == ([512, 1024], [341, 682])
    with pytest.raises(ConfigError, match=r"a list of 2 values .*one side, or \[height, width\]"):
        load_config(None, ["data.crop_size=[1, 2, 3]"])
    with pytest.raises(ConfigError, match=r"holds 0; each value must be in \[1, 16384\]"):
        load_config(None, ["eval.crop_size=[0, 5]"])
    with pytest.raises(ConfigError, match="long edge, short edge"):
        load_config(None, ["data.eval_scale=[512]"])


def test_docs_list_every_rule():
    from gsag.config import rules_markdown

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    assert rules_markdown() in text, "regenerate the table in docs/training.md: rules_markdown()"
