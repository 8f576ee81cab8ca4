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

Every head gets every recipe, so that heads compare on identical data, schedule and loss. The
output stride is the head's own (`head_levels(model).output_stride`): 8 (dilated D8 ResNets) for
every head but UPerNet and SegFormer, which read the undilated pyramid at 1/4..1/32 as
mmsegmentation's `upernet_r50` does. DeepLabV3+ and UPerNet follow their own mmsegmentation
configs where those exist (UPerNet has none for PASCAL-Context); SegFormer has none on ResNets
(only on its MiT encoders), so its ResNet files follow FCN's, undilated.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's gsag
from gsag.models import list_models
from gsag.models.segmentor import head_levels

MODELS = list_models()
#: model -> the output stride its recipes run at (the head's default)
OUTPUT_STRIDE = {m: head_levels(m).output_stride for m in MODELS}
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
#: ({m}: model, {d}: ResNet depth, {dil}: "-d8", or nothing for an undilated ResNet, {it}:
#: schedule tag).
MMSEG = {
    "voc": "{m}_r{d}{dil}_4xb4-{it}_voc12aug-512x512.py",
    "cityscapes": "{m}_r{d}{dil}_4xb2-{it}_cityscapes-512x1024.py",
    "ade20k": "{m}_r{d}{dil}_4xb4-{it}_ade20k-512x512.py",
    "context59": "{m}_r{d}{dil}_4xb4-{it}_pascal-context-59-480x480.py",
    "context60": "{m}_r{d}{dil}_4xb4-{it}_pascal-context-480x480.py",
}
#: Heads with mmsegmentation configs of their own on ResNets -> the datasets they have one for
#: (other pairs follow FCN's config of the dataset). DANet and UPerNet have none for Context.
MMSEG_HEADS = {
    "fcn": tuple(MMSEG), "pspnet": tuple(MMSEG), "deeplabv3": tuple(MMSEG),
    "deeplabv3plus": tuple(MMSEG), "danet": ("voc", "cityscapes", "ade20k"),
    "upernet": ("voc", "cityscapes", "ade20k"),
}  # fmt: skip
#: Heads mmsegmentation has, but not on ResNets
MMSEG_ELSEWHERE = {"segformer": "on its MiT encoders only"}
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
    own = dataset in MMSEG_HEADS.get(model, ())
    head = model if own else "fcn"
    dil = "" if OUTPUT_STRIDE[head] == 32 else "-d8"
    name = MMSEG[dataset].format(m=head, d=depth, dil=dil, it=tag)
    parts = [f"# Follows mmsegmentation's {name}"]
    if not own:
        why = (
            f"{model} configs {MMSEG_ELSEWHERE[model]}" if model in MMSEG_ELSEWHERE
            else f"no {model} config for this dataset" if model in MMSEG_HEADS
            else f"no {model} head"
        )  # fmt: skip
        parts.append(f" (its dataset recipe; mmsegmentation has {why})")
    if OUTPUT_STRIDE[model] != OUTPUT_STRIDE[head]:
        parts.append(f" at output stride {OUTPUT_STRIDE[model]} (undilated: {model} reads C2-C5)")
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
  output_stride: {stride}
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
                stride=OUTPUT_STRIDE[model],
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
# dataset recipes above; ConvNeXt is dilated to the head's output stride (8, like the ResNets; 32,
# undilated, for UPerNet and SegFormer), Swin (which timm cannot dilate) keeps its strides and
# the neck brings its coarse levels to 1/8 (no neck for UPerNet and SegFormer). Mean and std are
# left to the backbone (data.mean / data.std unset).
#
# UPerNet runs beside the other heads on these recipes (`<dataset>_upernet_<tag>_<iters>.yaml`,
# the same settings but for the head and its output stride). `ade20k_upernet_<tag>_160k_paper.yaml`
# is the published recipe itself as far as gsag can express it (mmsegmentation 1.x
# `convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py` and 0.x
# `swin/upernet_swin_tiny_patch4_window7_512x512_160k_ade20k_pretrain_224x224_1K.py`): plain
# cross-entropy, Swin-T's weight decay 0.01, and ConvNeXt-T's slide evaluation (512 windows,
# stride 341), ConvNeXt-T's stage-wise lr decay 0.9 (`optim.layer_decay`) and no weight decay
# on 1-D weights and biases (`optim.no_decay_norm_bias`), Swin-T's zero weight decay on norms and
# position tables (`optim.no_decay_norm_bias`, which also frees the biases). Not carried over:
# ConvNeXt-seg counts 6 layer groups for the 4 stages, so its stages train at 0.81x the rates
# of gsag's count (lr x 0.9 ** (4 - stage); its downsampling layers sit with the stem), the
# stochastic depth (0.4 ConvNeXt-T, 0.3 Swin-T) and fp16 autocast (gsag: bf16).

#: short file-name tag -> timm backbone, timm can dilate it, lr, published recipe
MODERN_BACKBONES = {
    "convnext_tiny": ("convnext_tiny.fb_in1k", True, 1e-4, "UperNet ConvNeXt-T 160k (ConvNeXt paper)"),
    "swin_tiny": ("swin_tiny_patch4_window7_224.ms_in1k", False, 6e-5, "UperNet Swin-T 160k (Swin paper)"),
}  # fmt: skip
#: tag -> the published UperNet recipe's weight decay (the `_paper` files; the others: 0.05)
PAPER_WEIGHT_DECAY = {"convnext_tiny": 0.05, "swin_tiny": 0.01}
#: tag -> the published UperNet recipe's ADE20K evaluation, where it is not the dataset's
PAPER_EVAL = {"convnext_tiny": "  mode: slide\n  crop_size: 512\n  stride: 341"}
#: tag -> what the `_paper` files still leave out of the published recipe
PAPER_LEFT_OUT = {
    "convnext_tiny": "0.81x backbone rates of its 6-group stage-wise lr decay (gsag counts the 4 stages), stochastic depth 0.4",
    "swin_tiny": "weight decay on biases, stochastic depth 0.3",
}
#: tag -> the published recipe's parameter-group settings (the `_paper` files)
PAPER_GROUPS = {
    "convnext_tiny": "  layer_decay: 0.9\n  no_decay_norm_bias: true\n",
    "swin_tiny": "  no_decay_norm_bias: true\n",
}
#: dataset -> backbone tags it gets (VOC: ConvNeXt-T only)
MODERN_DATASETS = {"ade20k": ["convnext_tiny", "swin_tiny"],
                   "cityscapes": ["convnext_tiny", "swin_tiny"], "voc": ["convnext_tiny"]}  # fmt: skip
MODERN_OPTIM = """optim:
  name: adamw
  lr: {lr}
  weight_decay: {weight_decay}
  head_lr_mult: 1.0
{groups}schedule:
  power: 1.0
  min_lr: 0.0
  warmup_iters: 1500
  warmup_ratio: 1.0e-06
"""


def modern_config(dataset: str, model: str, tag: str, iters: int, paper: bool = False) -> str:
    """One ConvNeXt-T / Swin-T recipe: the dataset recipe with the backbone's optimizer; with
    `paper`, the published UperNet recipe as far as gsag expresses it (ADE20K, upernet)."""
    title, data, _, _, batch, _, _, every, evaluation = RECIPES[dataset]
    backbone, dilatable, lr, source = MODERN_BACKBONES[tag]
    # OHEM (the GSAG description's loss) for every head, plain cross-entropy for the papers'
    loss, loss_title = LOSSES["_ce" if paper else ""]
    stride = OUTPUT_STRIDE[model] if dilatable else "null"
    weight_decay = 0.05
    note = f"# Optimizer and schedule follow the {source}; see configs/make_configs.py."
    if paper:
        weight_decay = PAPER_WEIGHT_DECAY[tag]
        evaluation = PAPER_EVAL.get(tag, evaluation)
        note = (
            f"# Optimizer and schedule follow the {source}, its loss, weight decay and "
            f"evaluation included; not its {PAPER_LEFT_OUT[tag]}. See configs/make_configs.py."
        )
    text = TEMPLATE.format(
        title=title, model=model, backbone=backbone, iters=iters, data=data, batch=batch,
        half=batch // 4, lr=lr, weight_decay=weight_decay, every=every, eval=evaluation,
        loss=loss, loss_title=loss_title, source=note, stride=stride,
    )  # fmt: skip
    title_line, text = text.split("\n", 1)
    text = text.replace("\n", f"\n{title_line}\n", 1)  # the recipe's source first
    head, rest = text.split("optim:\n", 1)
    rest = rest.split("train:\n", 1)[1]
    groups = PAPER_GROUPS[tag] if paper else ""
    optim = MODERN_OPTIM.format(lr=lr, weight_decay=weight_decay, groups=groups)
    return head + optim + "train:\n" + rest


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
    for tag in MODERN_BACKBONES:  # the published UperNet recipes
        text = modern_config("ade20k", "upernet", tag, 160_000, paper=True)
        (out / f"ade20k_upernet_{tag}_160k_paper.yaml").write_text(text)


if __name__ == "__main__":
    main()
    write_modern(Path(__file__).resolve().parent)
