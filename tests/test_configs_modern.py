"""The ConvNeXt-T / Swin-T recipes of configs/make_configs.py, and every shipped config built on
the meta device (no memory, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gsag.config import load_config
from gsag.models import create_model, list_models
from gsag.models.segmentor import head_levels

CONFIGS = sorted(Path(__file__).resolve().parent.parent.joinpath("configs").glob("*.yaml"))
MODERN = [p for p in CONFIGS if "_convnext_tiny_" in p.name or "_swin_tiny_" in p.name]
NUM_CLASSES = {"voc": 21, "cityscapes": 19, "ade20k": 150}


def _model_key(path: Path) -> tuple:
    m = load_config(path).model
    return (m.name, m.backbone, m.output_stride, m.aux, tuple(sorted(m.kwargs.items())))


#: one config per distinct model setup (many configs share one); the default suite builds the
#: two modern backbones, the slow one every setup
DISTINCT = list({_model_key(p): p for p in CONFIGS}.values())
QUICK = ["ade20k_deeplabv3_swin_tiny_160k"]  # a meta build of ConvNeXt-T alone takes ~10 s
BUILDS = [
    pytest.param(p, id=p.stem, marks=() if p.stem in QUICK else pytest.mark.slow)
    for p in [*DISTINCT, *(c for c in CONFIGS if c.stem in QUICK and c not in DISTINCT)]
]


@pytest.mark.parametrize("path", BUILDS)
def test_every_config_builds_on_the_meta_device(path):
    cfg = load_config(path)
    m = cfg.model
    with torch.device("meta"):
        model = create_model(
            m.name, 5, backbone=m.backbone, pretrained=False, output_stride=m.output_stride,
            aux=m.aux, **m.kwargs,
        )  # fmt: skip
    assert next(model.parameters()).device.type == "meta"
    # a neck only where timm cannot dilate and a level is coarser than the head's grid (1/8)
    native = max(model.backbone.reductions) <= head_levels(m.name).output_stride
    assert (model.neck is None) == (model.backbone.dilatable or native)


#: the published UperNet recipes (mmsegmentation's UperNet configs of the ConvNeXt and Swin papers)
PAPER = {
    "ade20k_upernet_convnext_tiny_160k_paper": dict(weight_decay=0.05, eval="slide", decay=0.9),
    "ade20k_upernet_swin_tiny_160k_paper": dict(weight_decay=0.01, eval="whole", decay=1.0),
}


def test_modern_recipes():
    # every head x (ADE20K 160k + Cityscapes 80k) x 2 + VOC 20k/40k, and the two papers' UperNet
    assert len(MODERN) == 6 * len(list_models()) + len(PAPER)
    for path in MODERN:
        cfg = load_config(path)
        dataset = path.stem.split("_")[0]
        swin = "_swin_tiny_" in path.name
        paper = PAPER.get(path.stem)
        assert cfg.model.backbone == (
            "swin_tiny_patch4_window7_224.ms_in1k" if swin else "convnext_tiny.fb_in1k"
        )
        undilated = cfg.model.name in ("upernet", "segformer")  # their native pyramid, as mmseg
        assert cfg.model.output_stride == (None if swin else 32 if undilated else 8)
        assert cfg.optim.name == "adamw"
        assert cfg.optim.weight_decay == (paper["weight_decay"] if paper else 0.05)
        assert cfg.eval.mode == (paper["eval"] if paper else "whole")
        assert cfg.optim.layer_decay == (paper["decay"] if paper else 1.0)
        assert cfg.optim.no_decay_norm_bias == bool(paper)
        assert cfg.loss.type == ("ce" if paper else "ohem")
        assert cfg.optim.lr == (6e-5 if swin else 1e-4)
        assert (cfg.schedule.warmup_iters, cfg.schedule.power, cfg.schedule.min_lr) == (
            1500,
            1.0,
            0,
        )
        assert cfg.data.mean == cfg.data.std == []  # the backbone's own
        assert cfg.train.iters == {"ade20k": 160_000, "cityscapes": 80_000}.get(
            dataset, cfg.train.iters
        )
        assert dataset in NUM_CLASSES and not (dataset == "voc" and swin)
        assert path.read_text().startswith("# Optimizer and schedule follow the UperNet")


def test_generator_is_in_sync(tmp_path):
    """make_configs.py writes exactly the modern files that are checked in."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_configs", Path(__file__).resolve().parent.parent / "configs" / "make_configs.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    module.write_modern(tmp_path)
    written = sorted(tmp_path.glob("*.yaml"))
    assert [p.name for p in written] == [p.name for p in MODERN]
    for p in written:
        assert p.read_text() == (CONFIGS[0].parent / p.name).read_text()
