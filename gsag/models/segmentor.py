"""Backbone + head (+ auxiliary FCN head) = a segmentation model; `create_model` builds one."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from torch import Tensor, nn

from gsag.models.backbone import DEFAULT_LEVELS, Backbone, list_backbones
from gsag.models.gsag import GSAGHead
from gsag.models.heads import DANetHead, DeepLabV3Head, FCNHead
from gsag.models.layers import resize

# Model name -> head builder(in_channels, num_classes, **head_kwargs). `output_stride` is passed
# to builders that accept it.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn": FCNHead,
    "gsag_basic": partial(GSAGHead, variant="basic"),
    "gsag_incremental": partial(GSAGHead, variant="incremental"),
    "gsag_hybrid": partial(GSAGHead, variant="hybrid"),
    "deeplabv3": DeepLabV3Head,
    "danet": DANetHead,
}

AUX_LOSS_WEIGHT = 0.4  # the usual weight of the auxiliary loss; the engine applies it


def list_models() -> list[str]:
    """Names accepted by `create_model`."""
    return list(MODELS)


def head_kwargs(name: str) -> list[str]:
    """Keyword arguments a model's head accepts (besides in_channels and num_classes)."""
    builder = MODELS[name]
    fixed = builder.keywords if isinstance(builder, partial) else {}
    func = builder.func if isinstance(builder, partial) else builder
    params = inspect.signature(func).parameters
    return [
        p for p in params if p not in ("self", "in_channels", "num_classes", "in_index", *fixed)
    ]


class Segmentor(nn.Module):
    """A segmentation model: `forward(x)` returns {"out": logits} at the input's size, plus
    {"aux": logits} from the auxiliary FCN head (on the second-to-last level, C4) in training.

    Attributes:
        model_args: the `create_model` arguments that rebuild this model (without weights).
    """

    def __init__(self, backbone: Backbone, head: nn.Module, aux_head: nn.Module | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.aux_head = aux_head
        self.model_args: dict = {}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        feats = self.backbone(x)  # [(B, C_i, H / r_i, W / r_i)]
        result = {"out": resize(self.head(feats), size)}  # (B, K, H, W)
        if self.training and self.aux_head is not None:
            result["aux"] = resize(self.aux_head(feats), size)  # (B, K, H, W)
        return result


def create_model(
    name: str,
    num_classes: int,
    backbone: str = "resnet50",
    pretrained: bool | str | Path = False,
    output_stride: int = 8,
    aux: bool = True,
    levels: Sequence[int] = DEFAULT_LEVELS,
    **kwargs,
) -> Segmentor:
    """Build a segmentation model by name.

    Args:
        name: one of `list_models()`: fcn, gsag_basic, gsag_incremental, gsag_hybrid,
            deeplabv3, danet.
        num_classes: number of classes (21 for PASCAL VOC).
        backbone: one of `list_backbones()`.
        pretrained: False (random init), True (ImageNet weights from timm's hub) or the path of
            a local `.safetensors` / `.pth` file with the backbone's weights.
        output_stride: 8, 16 or 32; the last stages are dilated to reach it.
        aux: add the auxiliary FCN head on the second-to-last level (C4), used in training.
        levels: timm feature levels handed to the head (C3, C4, C5 by default).
        **kwargs: head options, e.g. head_channels, num_heads, kernel_size, dropout
            (`head_kwargs(name)` lists them).

    Returns:
        A `Segmentor`; `forward(x)` takes (B, 3, H, W) floats of any H, W.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    if backbone not in list_backbones():
        raise ValueError(
            f"unknown backbone {backbone!r}; valid backbones: {', '.join(list_backbones())}"
        )
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    accepted = head_kwargs(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"create_model({name!r}): unknown keyword argument(s) {', '.join(unknown)}; "
            f"{name} accepts: {', '.join(a for a in accepted if a != 'output_stride') or 'none'}"
        )
    levels = tuple(levels)
    if aux and len(levels) < 2:
        raise ValueError(f"aux=True needs at least two levels, got levels={levels}")
    body = Backbone(backbone, output_stride=output_stride, levels=levels, pretrained=pretrained)
    head_kw = dict(kwargs)
    if "output_stride" in accepted:
        head_kw["output_stride"] = output_stride
    head = MODELS[name](body.channels, num_classes, **head_kw)
    aux_head = FCNHead(body.channels, num_classes, in_index=-2) if aux else None
    model = Segmentor(body, head, aux_head)
    model.model_args = dict(
        name=name,
        num_classes=num_classes,
        backbone=backbone,
        output_stride=output_stride,
        aux=aux,
        levels=list(levels),
        **kwargs,
    )
    return model
