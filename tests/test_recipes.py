"""The generated dataset recipes (configs/make_configs.py) against the table in docs/training.md.

Each row of the table pins a group of files: crop, train scale, batch, iterations, lr, weight
decay, loss, evaluation and the mmsegmentation config followed. A recipe that drifts from the
documented (and published) one fails here.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
from pathlib import Path

import pytest

from gsag.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def _make_configs():
    spec = importlib.util.spec_from_file_location("make_configs", ROOT / "configs/make_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table() -> list[dict[str, str]]:
    text = (ROOT / "docs/training.md").read_text()
    block = text.split("<!-- recipes:start -->")[1].split("<!-- recipes:end -->")[0]
    lines = [ln for ln in block.strip().splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip().strip("`") for c in ln.strip("|").split("|")] for ln in lines[2:]]
    return [dict(zip(head, r, strict=True)) for r in rows]


def _pair(text: str) -> list[int]:
    return [int(v) for v in text.split("×")]


FILES = _make_configs().recipe_files()
TABLE = _table()
#: mmsegmentation 1.x's own configs of each head on ResNets, by dataset (read from its configs/
#: folders): DANet and UPerNet have none for PASCAL-Context, SegFormer none on ResNets; the
#: other pairs follow FCN's. UPerNet's ResNets are undilated (`upernet_r50_...`, no -d8).
ALL = ("voc", "cityscapes", "ade20k", "context59", "context60")
MMSEG_CONFIGS = {
    "fcn": ALL, "pspnet": ALL, "deeplabv3": ALL, "deeplabv3plus": ALL,
    "danet": ALL[:3], "upernet": ALL[:3],
}  # fmt: skip
#: heads whose recipes run the undilated ResNet (output stride 32), as UPerNet does in mmseg
UNDILATED = ("upernet", "segformer")


def test_committed_configs_are_the_generated_ones():
    for name, text in FILES.items():
        assert (ROOT / "configs" / name).read_text() == text, (
            f"rerun configs/make_configs.py ({name})"
        )


def test_every_recipe_file_has_exactly_one_row():
    for name in FILES:
        rows = [r["files"] for r in TABLE if fnmatch.fnmatch(name, r["files"])]
        assert len(rows) == 1, (name, rows)
    assert all(any(fnmatch.fnmatch(n, r["files"]) for n in FILES) for r in TABLE)


def _check_eval(cfg, evaluation: str) -> None:
    mode = evaluation.split(",")[0].split()[0]
    assert cfg.eval.mode == mode
    if mode == "slide":
        window, stride = re.search(r"slide (\d+), stride (\d+)", evaluation).groups()
        assert (cfg.eval.crop_size, cfg.eval.stride) == (int(window), int(stride))
    resized = re.search(r"resized to (\d+×\d+)", evaluation)
    assert list(cfg.data.eval_scale) == (_pair(resized.group(1)) if resized else [])


@pytest.mark.parametrize("row", TABLE, ids=[r["files"] for r in TABLE])
def test_files_follow_their_row(row):
    names = [n for n in FILES if fnmatch.fnmatch(n, row["files"])]
    for name in names:
        cfg = load_config(str(ROOT / "configs" / name))
        crop = cfg.data.crop_size
        assert (list(crop) if isinstance(crop, list) else [crop, crop]) == _pair(row["crop"])
        assert list(cfg.data.base_size) == _pair(row["train scale (× 0.5–2.0)"])
        assert list(cfg.data.scale_range) == [0.5, 2.0]
        assert cfg.train.batch_size == int(row["batch"])
        assert cfg.train.iters == int(row["iterations"])
        assert cfg.optim.lr == float(row["lr"]) and cfg.optim.name == "sgd"
        assert cfg.optim.weight_decay == float(row["weight decay"])
        assert cfg.loss.type == row["loss"] and cfg.loss.aux_weight == 0.4
        _check_eval(cfg, row["evaluation"])
        # the header names the mmsegmentation config this file follows, at its output stride
        model, backbone = cfg.model.name, cfg.model.backbone
        dataset = name.split("_")[0]
        head = model if dataset in MMSEG_CONFIGS.get(model, ()) else "fcn"
        depth = backbone.removeprefix("resnet") if backbone in ("resnet50", "resnet101") else "50"
        followed = row["mmsegmentation config followed"].replace("<m>", head)
        followed = followed.replace("<d>", depth).replace("-d8", "" if head == "upernet" else "-d8")
        header = (ROOT / "configs" / name).read_text().splitlines()[1]
        assert f"Follows mmsegmentation's {followed}" in header
        assert cfg.model.output_stride == (32 if model in UNDILATED else 8)
        if cfg.model.output_stride != (32 if head == "upernet" else 8):
            assert f"at output stride {cfg.model.output_stride} (undilated" in header


def test_ce_and_ohem_recipes_differ_in_the_loss_only():
    for name in FILES:
        if name.endswith("_ce.yaml"):
            ohem = load_config(str(ROOT / "configs" / name.replace("_ce.yaml", ".yaml")))
            ce = load_config(str(ROOT / "configs" / name))
            assert (ce.loss.type, ohem.loss.type) == ("ce", "ohem")
            ce_dict, ohem_dict = ce.to_dict(), ohem.to_dict()
            ce_dict.pop("loss"), ohem_dict.pop("loss")
            for d in (ce_dict, ohem_dict):
                d["output"].pop("run_dir", None)
            assert ce_dict == ohem_dict, name
