"""Write the flat recipe configs: configs/<dataset>_<model>_<backbone>_<iters>.yaml.

One recipe per dataset (mmsegmentation's conventions), shared by every model:
- voc: train_aug (VOC 2012 + SBD, 10 582 images), random resize 0.5-2.0 of 2048x512, crop 512,
  batch 16, 20k / 40k iterations, whole-image evaluation with the image resized to the
  2048x512 keep-ratio scale (as mmsegmentation's test pipeline);
- cityscapes: fine train (2975), random resize 0.5-2.0 of 2048x1024, crop 512x1024, batch 8,
  80k iterations, whole-image evaluation at the full 1024x2048 (mmsegmentation slides only in
  its 769x769 recipes);
- ade20k: training (20 210), random resize 0.5-2.0 of 2048x512, crop 512, batch 16, 80k / 160k
  iterations, whole-image evaluation with the image resized to short side 512;
- context59 / context60: PASCAL-Context train (4998), random resize 0.5-2.0 of 520x520, crop
  480, batch 16, 40k / 80k iterations, SGD lr 0.004 and weight decay 1e-4, slide evaluation
  (480 windows, stride 320) on the image resized into 520x520.
All: cat_max_ratio 0.75, flip, photometric distortion; SGD momentum 0.9, poly 0.9 to 1e-4 per
iteration; aux loss 0.4. Two losses per recipe: `<name>.yaml` trains with OHEM (the GSAG
description's loss), `<name>_ce.yaml` with plain cross-entropy (mmsegmentation's FCN, DeepLabV3
and DANet baselines); each file's header names the mmsegmentation config it follows. The
table in docs/training.md pins every recipe (tests/test_recipes.py). Run from the repository
root: `python configs/make_configs.py`. Every file is complete on its own (no inheritance).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's gsag
from gsag.models import list_models

MODELS = list_models()
RESNETS = ["resnet50", "resnet101"]

VOC_DATA = """\
  root: data/VOCdevkit/VOC2012
  layout: voc
  train_split: train_aug
  val_split: val
  crop_size: 512
  base_size: [2048, 512]
  eval_scale: [2048, 512]"""
CITYSCAPES_DATA = """\
  root: data/cityscapes
  layout: cityscapes
  train_split: train
  val_split: val
  crop_size: [512, 1024]
  base_size: [2048, 1024]"""
ADE20K_DATA = """\
  root: data/ADEChallengeData2016
  layout: ade20k
  train_split: training
  val_split: validation
  crop_size: 512
  base_size: [2048, 512]
  eval_scale: [2048, 512]"""
CONTEXT_DATA = """\
  root: data/VOCdevkit/VOC2010
  layout: {layout}
  train_split: train
  val_split: val
  crop_size: 480
  base_size: [520, 520]
  eval_scale: [520, 520]"""

#: name -> title, data keys, backbones, {tag: iters}, batch, lr, weight decay, eval every, eval
RECIPES = {
    "voc": (
        "PASCAL VOC 2012 + SBD (train_aug)", VOC_DATA,
        [*RESNETS, "resnext101_32x8d"], {"20k": 20_000, "40k": 40_000}, 16, 0.01, 0.0005, 2000,
        "  mode: whole\n  crop_size: 512\n  stride: 341",
    ),
    "cityscapes": (
        "Cityscapes fine (19 classes)", CITYSCAPES_DATA,
        RESNETS, {"80k": 80_000}, 8, 0.01, 0.0005, 8000,
        "  mode: whole\n  crop_size: [512, 1024]\n  stride: [341, 682]",
    ),
    "ade20k": (
        "ADE20K SceneParsing (150 classes)", ADE20K_DATA,
        RESNETS, {"80k": 80_000, "160k": 160_000}, 16, 0.01, 0.0005, 8000,
        "  mode: whole\n  crop_size: 512\n  stride: 341",
    ),
    "context59": (
        "PASCAL-Context (59 classes, background ignored)", CONTEXT_DATA.format(layout="context59"),
        RESNETS, {"40k": 40_000, "80k": 80_000}, 16, 0.004, 0.0001, 4000,
        "  mode: slide\n  crop_size: 480\n  stride: 320",
    ),
    "context60": (
        "PASCAL-Context (60 classes with background)", CONTEXT_DATA.format(layout="context60"),
        RESNETS, {"40k": 40_000, "80k": 80_000}, 16, 0.004, 0.0001, 4000,
        "  mode: slide\n  crop_size: 480\n  stride: 320",
    ),
}  # fmt: skip

#: The published recipe each dataset's files follow: mmsegmentation 1.x config names
#: ({m}: model, {d}: ResNet depth, {it}: schedule tag).
MMSEG = {
    "voc": "{m}_r{d}-d8_4xb4-{it}_voc12aug-512x512.py",
    "cityscapes": "{m}_r{d}-d8_4xb2-{it}_cityscapes-512x1024.py",
    "ade20k": "{m}_r{d}-d8_4xb4-{it}_ade20k-512x512.py",
    "context59": "{m}_r{d}-d8_4xb4-{it}_pascal-context-59-480x480.py",
    "context60": "{m}_r{d}-d8_4xb4-{it}_pascal-context-480x480.py",
}
#: Heads with an mmsegmentation config of their own (others follow FCN's dataset recipe).
MMSEG_HEADS = {"fcn": "fcn", "pspnet": "pspnet", "deeplabv3": "deeplabv3", "danet": "danet"}
#: file suffix -> (loss block, what it is); both keep aux weight 0.4
LOSSES = {
    "": (
        "  type: ohem\n  thresh: 0.7\n  min_kept: 100000\n  aux_weight: 0.4",
        "OHEM cross-entropy (thresh 0.7, min_kept 100 000): the GSAG description's loss",
    ),
    "_ce": (
        "  type: ce\n  aux_weight: 0.4",
        "plain cross-entropy: the loss of mmsegmentation's FCN / DeepLabV3 / DANet baselines",
    ),
}


def recipe_source(dataset: str, model: str, backbone: str, tag: str, suffix: str) -> str:
    """The header line naming the published recipe this file follows and how it differs."""
    depth = backbone.removeprefix("resnet") if backbone in RESNETS else "50"
    name = MMSEG[dataset].format(m=MMSEG_HEADS.get(model, "fcn"), d=depth, it=tag)
    parts = [f"# Follows mmsegmentation's {name}"]
    if model not in MMSEG_HEADS:
        parts.append(f" (its dataset recipe; mmsegmentation has no {model} head)")
    if backbone not in RESNETS:
        parts.append(f" with {backbone} in place of ResNet-{depth}")
    parts.append(
        ": the same recipe, plain cross-entropy."
        if suffix
        else ", with OHEM in place of its plain cross-entropy (the *_ce file matches it)."
    )
    return "".join(parts)


TEMPLATE = """\
# {title}, {model} on {backbone}, {iters} iterations, {loss_title}.
{source}
# Generated by configs/make_configs.py; edit the script, not this file.
# Batch {batch} in total: on fewer GPUs set train.accum_steps (e.g. 2 GPUs x {half} images x 2 steps).
data:
{data}
  scale_range: [0.5, 2.0]
  cat_max_ratio: 0.75
  hflip: 0.5
  photometric: true
model:
  name: {model}
  backbone: {backbone}
  pretrained: true
  output_stride: 8
  aux: true
loss:
{loss}
optim:
  name: sgd
  lr: {lr}
  momentum: 0.9
  weight_decay: {weight_decay}
  head_lr_mult: 1.0
schedule:
  power: 0.9
  min_lr: 0.0001
  warmup_iters: 0
train:
  iters: {iters}
  batch_size: {batch}
  accum_steps: 1
  amp: auto  # bf16 on a CUDA GPU that supports it, float32 on CPU
  eval_interval: {every}
  save_interval: {every}
  log_interval: 50
  num_workers: 4
  seed: 0
eval:
{eval}
"""


def recipe_files() -> dict[str, str]:
    """File name -> text of every dataset recipe."""
    files = {}
    for dataset, recipe in RECIPES.items():
        title, data, backbones, schedules, batch, lr, weight_decay, every, evaluation = recipe
        combos = itertools.product(MODELS, backbones, schedules.items(), LOSSES.items())
        for model, backbone, (tag, iters), (suffix, (loss, loss_title)) in combos:
            files[f"{dataset}_{model}_{backbone}_{tag}{suffix}.yaml"] = TEMPLATE.format(
                title=title, model=model, backbone=backbone, iters=iters, data=data,
                batch=batch, half=batch // 4, lr=lr, weight_decay=weight_decay,
                every=every, eval=evaluation, loss=loss, loss_title=loss_title,
                source=recipe_source(dataset, model, backbone, tag, suffix),
            )  # fmt: skip
    return files


def main() -> None:
    out = Path(__file__).resolve().parent
    for name, text in recipe_files().items():
        (out / name).write_text(text)


# -- modern backbones: ConvNeXt-T and Swin-T ---------------------------------------------------
# The optimizer and schedule of the UperNet recipes published with each backbone (mmsegmentation
# configs `convnext/upernet_convnext_tiny_fp16_512x512_160k_ade20k` and
# `swin/upernet_swin-t_..._512x512_160k_ade20k`): AdamW, linear warm-up over 1500 iterations
# from 1e-6 x lr, then poly decay with power 1.0 to 0; lr 1e-4 (ConvNeXt) and 6e-5 (Swin); weight
# decay 0.05 for both (the Swin recipe's own value is 0.01). Not carried over: their stage-wise
# lr decay (ConvNeXt), stochastic depth and the UperNet head itself. Data and evaluation are the
# dataset recipes above; ConvNeXt is dilated to output stride 8 like the ResNets, Swin (which
# timm cannot dilate) keeps its strides and the neck brings its levels to 1/8. Mean and std are
# left to the backbone (data.mean / data.std unset).

#: short file-name tag -> timm backbone, output_stride line, lr, published recipe
MODERN_BACKBONES = {
    "convnext_tiny": ("convnext_tiny.fb_in1k", "8", 1e-4, "UperNet ConvNeXt-T 160k (ConvNeXt paper)"),
    "swin_tiny": ("swin_tiny_patch4_window7_224.ms_in1k", "null", 6e-5, "UperNet Swin-T 160k (Swin paper)"),
}  # fmt: skip
#: dataset -> backbone tags it gets (VOC: ConvNeXt-T only)
MODERN_DATASETS = {"ade20k": ["convnext_tiny", "swin_tiny"],
                   "cityscapes": ["convnext_tiny", "swin_tiny"], "voc": ["convnext_tiny"]}  # fmt: skip
MODERN_OPTIM = """optim:
  name: adamw
  lr: {lr}
  weight_decay: 0.05
  head_lr_mult: 1.0
schedule:
  power: 1.0
  min_lr: 0.0
  warmup_iters: 1500
  warmup_ratio: 1.0e-06
"""


def modern_config(dataset: str, model: str, tag: str, iters: int) -> str:
    """One ConvNeXt-T / Swin-T recipe: the dataset recipe with the backbone's optimizer."""
    title, data, _, _, batch, _, _, every, evaluation = RECIPES[dataset]
    backbone, stride, lr, source = MODERN_BACKBONES[tag]
    loss, loss_title = LOSSES[""]  # OHEM: the GSAG description's loss, for every head here
    note = f"# Optimizer and schedule follow the {source}; see configs/make_configs.py."
    text = TEMPLATE.format(
        title=title, model=model, backbone=backbone, iters=iters, data=data, batch=batch,
        half=batch // 4, lr=lr, weight_decay=0.05, every=every, eval=evaluation,
        loss=loss, loss_title=loss_title, source=note,
    )  # fmt: skip
    text = text.replace("  output_stride: 8\n", f"  output_stride: {stride}\n")
    title_line, text = text.split("\n", 1)
    text = text.replace("\n", f"\n{title_line}\n", 1)  # the recipe's source first
    head, rest = text.split("optim:\n", 1)
    rest = rest.split("train:\n", 1)[1]
    return head + MODERN_OPTIM.format(lr=lr) + "train:\n" + rest


def write_modern(out: Path) -> None:
    """configs/<dataset>_<model>_{convnext_tiny,swin_tiny}_<iters>.yaml."""
    for dataset, tags in MODERN_DATASETS.items():
        for model in MODELS:
            for tag in tags:
                for iters_tag, iters in RECIPES[dataset][3].items():
                    if dataset == "ade20k" and iters_tag != "160k":
                        continue  # the published recipes are 160k
                    text = modern_config(dataset, model, tag, iters)
                    (out / f"{dataset}_{model}_{tag}_{iters_tag}.yaml").write_text(text)


if __name__ == "__main__":
    main()
    write_modern(Path(__file__).resolve().parent)
