"""Backbones: any timm feature extractor, with a chosen output stride and feature levels.

A backbone returns a list of feature maps, one per level; `channels` and `reductions` (read from
timm's `feature_info`) tell the heads what they get. `backbone` is one of our short names
(`BACKBONES`) or any timm model name, with or without a pretrained tag.

- Hierarchical models (ResNet, ConvNeXt, Swin, EfficientNet, MaxViT, ...): `levels` are timm
  `out_indices`; the default takes the levels at the strides the head reads (its `LevelSpec`,
  gsag/models/levels.py): 8, 16 and 32 (C3, C4, C5 of a ResNet) for most heads, 4 to 32 (C2..C5)
  for DeepLabV3+, UPerNet and SegFormer. Where timm can dilate the model (`output_stride`), the
  last stages are dilated: at output stride 8 (the "D8" setting, the default of most heads) the
  levels from C3 on lie on the 1/8 grid; UPerNet and SegFormer default to 32 (undilated).
- Models timm cannot dilate keep their strides; the segmentor's neck (gsag/models/neck.py)
  brings their levels coarser than the head's output stride to it instead. Asking them for
  another `output_stride` is an error.
- Plain ViTs (one resolution): `levels` are block indices (default: as many evenly spaced blocks
  as the head reads levels, the last one included); a `SimplePyramid` turns them into levels at
  1/8, 1/16 and 1/32 (and 1/4 for four levels).

Inputs are padded (bottom/right, zeros) to `pad_multiple` inside the segmentor: patch and window
models need it, ResNets do not (1). Position embeddings follow the input size (timm's
`dynamic_img_size`).
"""

from __future__ import annotations

import difflib
import functools
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from gsag.config import OUTPUT_STRIDES
from gsag.models.backbone_weights import LoadReport, load_backbone_weights
from gsag.models.errors import ModelArgError, WeightsDownloadError
from gsag.models.levels import DEFAULT_OUTPUT_STRIDE, LEVEL_STRIDES
from gsag.models.neck import SimplePyramid

if TYPE_CHECKING:
    from timm.models import FeatureInfo

log = logging.getLogger(__name__)

# Our name -> timm model name and pretrained tag. The three backbones of the GSAG description
# (docs/design.md), deep-stem variants, and small ones for tests and CPUs. ResNets use the
# original torchvision ImageNet weights (`tv_in1k`), as torchvision's segmentation models and
# most published baselines do. Any other timm model name is accepted as it is.
BACKBONES: dict[str, str] = {
    "resnet50": "resnet50.tv_in1k",
    "resnet101": "resnet101.tv_in1k",
    "resnext101_32x8d": "resnext101_32x8d.tv_in1k",
    "resnet50d": "resnet50d.ra2_in1k",
    "resnet101d": "resnet101d.ra2_in1k",
    "resnet18": "resnet18.tv_in1k",
    "resnet34": "resnet34.tv_in1k",
    "test_resnet": "test_resnet",  # ~0.4 M parameters, random init only: for unit tests
}

#: Families the test suite covers: family -> (tiny timm model of the tests, a full-size model).
TESTED_FAMILIES: dict[str, tuple[str, str]] = {
    "resnet": ("test_resnet", "resnet50.tv_in1k"),
    "convnext": ("test_convnext", "convnext_tiny.fb_in22k_ft_in1k"),
    "efficientnet": ("test_efficientnet", "efficientnet_b3.ra2_in1k"),
    "byobnet (RegNet-style, GENets)": ("test_byobnet", "gernet_m.idstcv_in1k"),
    "nfnet": ("test_nfnet", "eca_nfnet_l0.ra2_in1k"),
    "maxvit (windowed)": ("test_maxvit", "maxvit_tiny_tf_224.in1k"),
    "vit (plain, DeiT, DINOv2)": ("test_vit", "vit_small_patch14_dinov2.lvd142m"),
    "swin (windowed)": ("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224.ms_in1k"),
}

DEFAULT_LEVELS = (2, 3, 4)  # C3, C4, C5 of a ResNet; other models: see `default_levels`
#: timm model modules whose convolutions are padded for any input size: no input padding, so
#: their results match those before padding was added.
NO_PAD_FAMILIES = ("resnet",)
#: Keyword arguments that let timm models take any input size, tried in this order.
_SIZE_KWARGS: tuple[dict[str, Any], ...] = (
    dict(dynamic_img_size=True, strict_img_size=False),
    dict(dynamic_img_size=True),
    {},
)


def list_backbones() -> list[str]:
    """Our short backbone names; any timm model name (`timm.list_models()`) works as well."""
    return list(BACKBONES)


def timm_name(name: str) -> str:
    """The timm model name (with pretrained tag) of a short name or a timm name."""
    return BACKBONES.get(name, name)


def nearest_backbones(name: str, n: int = 3) -> list[str]:
    """The names of `list_backbones()` and timm's models closest to `name`."""
    import timm

    names = list(
        dict.fromkeys([*BACKBONES, *timm.list_models()])
    )  # a short name is often timm's too
    return difflib.get_close_matches(name, names, n=n, cutoff=0.5)


def check_backbone_name(name: str) -> None:
    """Raise `ModelArgError` (naming the nearest names) unless timm knows `name`."""
    import timm

    if name in BACKBONES or (isinstance(name, str) and timm.is_model(name)):
        return
    near = nearest_backbones(str(name))
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    raise ModelArgError(
        "backbone",
        f"is {name!r}, which is not a timm model; {hint}list them with "
        "`gsag models --backbones PATTERN`",
    )


def backbone_mean_std(name: str) -> tuple[list[float], list[float]]:
    """The input mean and std ([0, 1] scale) the backbone's pretrained weights expect."""
    from timm.models import get_pretrained_cfg

    from gsag.data.io import IMAGENET_MEAN, IMAGENET_STD

    cfg = get_pretrained_cfg(timm_name(name))
    mean = getattr(cfg, "mean", None) or IMAGENET_MEAN
    std = getattr(cfg, "std", None) or IMAGENET_STD
    return [float(v) for v in mean], [float(v) for v in std]


@dataclass
class Probe:
    """What a backbone offers, read from a features-only build on the meta device."""

    info: list[dict[str, Any]]  # timm feature_info of every level (or block)
    size_kwargs: dict[str, Any]  # the timm keywords that let it take any input size
    plain: bool  # one resolution: a plain ViT (levels are blocks)


@functools.lru_cache(maxsize=32)
def probe_backbone(name: str) -> Probe:
    """Build `name` features-only on the meta device (no memory, no download); cached, as a
    meta build of a large model takes seconds (weight init runs on the meta device too).

    Raises:
        ModelArgError: unknown name, or timm cannot give feature maps for the model.
    """
    import timm

    check_backbone_name(name)
    last: Exception | None = None
    for size_kwargs in _SIZE_KWARGS:
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                body = timm.create_model(timm_name(name), features_only=True, **size_kwargs)
        except TypeError as err:  # a size keyword the model does not take: try the next set
            last = err
            continue
        except Exception as err:
            last = err
            break
        info = list(cast("FeatureInfo", body.feature_info).info)
        plain = len(info) > 1 and len({d["reduction"] for d in info}) == 1
        _check_any_size(name, body, max(int(d["reduction"]) for d in info))
        return Probe(info, size_kwargs, plain)
    raise ModelArgError(
        "backbone",
        f"is {name!r}, but timm cannot give feature maps for it ({type(last).__name__}: "
        f"{str(last).splitlines()[0] if str(last) else ''}); pick a model with features_only "
        "support, e.g. one of `gsag models --backbones`",
    )


def _check_any_size(name: str, body: nn.Module, stride: int) -> None:
    """Refuse a backbone that takes only its pretraining size (MLP-Mixer, LeViT, ...): on the
    meta device (shapes only), a forward at another size (a multiple of the padding the segmentor
    applies) fails where one at the pretraining size runs. Segmentation feeds it crops and whole
    images of any size. A model that runs at neither is not judged here (an op the meta device
    lacks, say)."""
    from timm.models import get_pretrained_cfg

    size = getattr(get_pretrained_cfg(timm_name(name)), "input_size", None) or (3, 224, 224)
    native = (int(size[-2]), int(size[-1]))
    step = _pad_multiple(name, body, stride)
    other = (-(-(native[0] + 1) // step) * step, -(-(native[1] + step + 1) // step) * step)
    body = body.eval()
    failure = _meta_forward(body, other)
    if failure is None or _meta_forward(body, native) is not None:
        return
    raise ModelArgError(
        "backbone",
        f"is {name!r}, which takes only {native[0]}x{native[1]} inputs (at {other[0]}x"
        f"{other[1]}: {failure}); segmentation feeds crops and whole images of any size: pick "
        "a backbone that takes any size, e.g. one of `gsag models --backbones`",
    )


def _meta_forward(body: nn.Module, size: tuple[int, int]) -> str | None:
    """Why `body` cannot run a (1, 3, H, W) input on the meta device, or None when it can."""
    try:
        with torch.device("meta"), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            body(torch.empty(1, 3, *size))
    except Exception as err:
        text = str(err).strip()
        return f"{type(err).__name__}: {text.splitlines()[0][:120] if text else ''}"
    return None


def default_levels(probe: Probe, strides: Sequence[int] = LEVEL_STRIDES) -> tuple[int, ...]:
    """The levels at `strides` (default 8, 16, 32; hierarchical models), or as many evenly
    spaced blocks, the last included (plain ViTs: 12 blocks give 3, 7, 11 or 2, 5, 8, 11)."""
    n, m = len(probe.info), len(strides)
    if probe.plain:
        return tuple(sorted({max(n * k // m - 1, 0) for k in range(1, m + 1)}))
    picked = tuple(i for i, d in enumerate(probe.info) if d["reduction"] in strides)
    return picked if len(picked) >= 2 else tuple(range(max(n - m, 0), n))


def _window(module: nn.Module) -> int:
    """The largest attention window / grid of a windowed model (MaxViT: `partition_size`)."""
    sizes = [1]
    for m in module.modules():
        size = getattr(m, "partition_size", None)
        if size is not None:
            sizes.append(max(size) if isinstance(size, Sequence) else int(size))
    return max(sizes)


class Backbone(nn.Module):
    """A timm features-only network returning one feature map (B, C, H, W) per level.

    Attributes:
        name: the backbone name as given (short or timm name).
        levels: timm `out_indices` of the returned maps (blocks of a plain ViT).
        channels: channels of each returned map.
        reductions: stride of each returned map relative to the (padded) input.
        output_stride: the stride of the last stages: the one asked for (else `default_stride`)
            where timm can dilate the model (`dilatable`), else the model's own.
        dilatable: timm takes `output_stride` for this model.
        pad_multiple: inputs are padded to a multiple of this before the backbone.
        mean, std: the input normalisation of the backbone's pretrained weights.
        load_report: set when weights came from a local file.
    """

    def __init__(
        self,
        name: str,
        output_stride: int | None = None,
        levels: Sequence[int] | None = None,
        pretrained: bool | str | Path = False,
        level_strides: Sequence[int] = LEVEL_STRIDES,
        default_stride: int = DEFAULT_OUTPUT_STRIDE,
    ) -> None:
        """`level_strides` picks the default levels, `default_stride` the output stride of a
        dilatable model when `output_stride` is None (both from the head's `LevelSpec`)."""
        super().__init__()
        if output_stride is not None and output_stride not in OUTPUT_STRIDES:
            raise ModelArgError(
                "output_stride",
                f"is {output_stride} (output_stride={output_stride} is not supported); use one "
                f"of {OUTPUT_STRIDES}, or leave it unset",
            )
        probe = probe_backbone(name)
        self.name = name
        self.levels = tuple(int(i) for i in (levels or default_levels(probe, level_strides)))
        bad = [i for i in self.levels if not -len(probe.info) <= i < len(probe.info)]
        if bad:
            raise ModelArgError(
                "kwargs.levels",
                f"is {list(self.levels)}; {name} has levels 0..{len(probe.info) - 1}",
            )
        stride = output_stride or default_stride
        self.body, self.dilatable = _create(
            name, probe, self.levels, output_stride, stride, pretrained
        )
        feature_info = cast("FeatureInfo", self.body.feature_info)
        self.channels: list[int] = list(feature_info.channels())
        self.reductions: list[int] = list(feature_info.reduction())
        self.channels_last = "NHWC" in str(getattr(self.body, "output_fmt", "NCHW"))
        self.pyramid: SimplePyramid | None = None
        if probe.plain:
            scales = range(2 - len(self.levels), 2)  # ..., 1/8, 1/16, 1/32 at patch 16
            self.pyramid = SimplePyramid(self.channels[-1], scales)
            patch = self.reductions[-1]
            self.channels = list(self.pyramid.channels)
            self.reductions = [max(1, round(patch * 2.0**s)) for s in scales]
        native = max(self.reductions) if not probe.plain else feature_info.reduction()[-1]
        self.output_stride = int(stride) if self.dilatable else native
        self.pad_multiple = _pad_multiple(name, self.body, max(feature_info.reduction()))
        self.mean, self.std = backbone_mean_std(name)
        self.load_report: LoadReport | None = None
        if isinstance(pretrained, str | Path):  # a local weights file (True: the hub)
            target = getattr(self.body, "model", self.body)  # a getter net wraps the model
            self.load_report = load_backbone_weights(target, pretrained)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.body(x)  # [(B, C_i, H / r_i, W / r_i)] (NHWC for Swin)
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        if self.pyramid is not None:
            feats = self.pyramid(feats)
        return list(feats)


def family(name: str) -> str:
    """The timm module that defines a model, e.g. "resnet", "convnext", "swin_transformer"."""
    from timm.models import model_entrypoint

    base = timm_name(name).split(".")[0]
    return model_entrypoint(base).__module__.rsplit(".", 1)[-1]


def _pad_multiple(name: str, body: nn.Module, stride: int) -> int:
    """Inputs are padded to this multiple: 1 for `NO_PAD_FAMILIES`, else the largest stride,
    times the attention window for windowed models (MaxViT)."""
    if family(name) in NO_PAD_FAMILIES:
        return 1
    window = _window(body)
    return stride * window // math.gcd(stride, window) if window > 1 else stride


def _create(
    name: str,
    probe: Probe,
    levels: tuple[int, ...],
    output_stride: int | None,
    stride: int,
    pretrained: bool | str | Path,
) -> tuple[nn.Module, bool]:
    """The timm features-only network and whether it took `stride` (is dilatable); a given
    `output_stride` other than its own is an error for a model timm cannot dilate."""
    import timm

    kwargs: dict[str, Any] = dict(features_only=True, out_indices=levels, **probe.size_kwargs)
    use_hub = pretrained is True
    try:
        if not probe.plain:
            try:
                return timm.create_model(
                    timm_name(name), pretrained=use_hub, output_stride=stride, **kwargs
                ), True
            except (TypeError, AssertionError) as err:  # no output_stride for this model
                if "output_stride" not in str(err) and isinstance(err, TypeError):
                    raise
        if output_stride is not None and output_stride != _native_stride(probe, levels):
            raise ModelArgError(
                "output_stride",
                f"is {output_stride}, but {name} cannot change its stride (timm has no "
                f"output_stride for it; its levels end at 1/{_native_stride(probe, levels)}). "
                "Fix: leave output_stride unset (null); the neck brings its coarse levels to the "
                "head's grid (1/8 for most heads)",
            )
        return timm.create_model(timm_name(name), pretrained=use_hub, **kwargs), False
    except ModelArgError:
        raise
    except Exception as err:
        if not use_hub:
            raise
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        raise WeightsDownloadError(
            f"could not download pretrained weights for backbone {name!r} from the Hugging "
            f"Face hub ({type(err).__name__}: {first}). Fix: connect to the internet (or set "
            "HF_ENDPOINT to a mirror; HF_HUB_OFFLINE=1 skips the retries), download the "
            f"weights elsewhere and pass pretrained='path/to/{name}.safetensors' (in a config: "
            "model.pretrained=PATH), or train from random weights (model.pretrained=false)"
        ) from err


def _native_stride(probe: Probe, levels: tuple[int, ...]) -> int:
    """The stride a model keeps when timm cannot dilate it: its patch size (plain ViT), else
    that of its coarsest chosen level."""
    return max(int(probe.info[i]["reduction"]) for i in levels)
