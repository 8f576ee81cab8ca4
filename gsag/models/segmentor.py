"""Backbone + head (+ auxiliary FCN head) = a segmentation model; `create_model` builds one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from gsag.flops import count_params
from gsag.models.backbone import Backbone
from gsag.models.check import check_model_args
from gsag.models.heads import FCNHead
from gsag.models.layers import resize
from gsag.models.levels import D8, LevelSpec
from gsag.models.neck import ResizeNeck
from gsag.models.table import MODELS, head_levels, head_parameters


def make_neck(backbone: Backbone, spec: LevelSpec = D8) -> ResizeNeck | None:
    """The neck between a backbone and a head reading `spec`: none where timm dilates the
    backbone (its levels are already on the output-stride grid) or where no level is coarser
    than the head's output stride (UPerNet, SegFormer), else a resize of the coarser levels to
    it (1/8: every head reading C3..C5 gets the same neck)."""
    if backbone.dilatable or max(backbone.reductions) <= spec.output_stride:
        return None
    return ResizeNeck(spec.output_stride, backbone.reductions)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad (B, C, H, W) at the bottom/right to multiples of `multiple` (zero = the mean)."""
    if multiple <= 1:
        return x
    h, w = x.shape[-2:]
    return F.pad(
        x, (0, (multiple - w % multiple) % multiple, 0, (multiple - h % multiple) % multiple)
    )


class Segmentor(nn.Module):
    """A segmentation model: `forward(x)` returns {"out": logits} at the input's size, plus
    {"aux": logits} from the auxiliary FCN head (on the second-to-last level, C4) in training.

    The input is padded to the backbone's `pad_multiple` and the logits cropped back; the neck
    (`make_neck`) brings the coarse levels of backbones timm cannot dilate to the head's grid.

    Attributes:
        model_args: the `create_model` arguments that rebuild this model (without weights).
        mean, std: the input normalisation the backbone's pretrained weights expect.
    """

    def __init__(
        self,
        backbone: Backbone,
        head: nn.Module,
        aux_head: nn.Module | None,
        neck: ResizeNeck | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.aux_head = aux_head
        self.model_args: dict = {}
        self.mean, self.std = backbone.mean, backbone.std

    def features(self, x: Tensor) -> list[Tensor]:
        """The levels the heads read: [(B, C_i, H_i, W_i)] of a padded input (B, 3, H, W)."""
        feats = self.backbone(x)
        return feats if self.neck is None else self.neck(feats, x.shape[-2:])

    def params_line(self) -> str:
        """In words, e.g. "11.79 M parameters (11.64 M without the training-only aux head)"."""
        total = count_params(self) / 1e6
        if self.aux_head is None:
            return f"{total:.2f} M parameters (no aux head)"
        without = total - count_params(self.aux_head) / 1e6
        return f"{total:.2f} M parameters ({without:.2f} M without the training-only aux head)"

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.backbone.pad_multiple)  # (B, 3, H', W')
        feats = self.features(x)  # [(B, C_i, H' / r_i, W' / r_i)]
        size = x.shape[-2:]
        result = {"out": resize(self.head(feats), size)[..., :h, :w]}  # (B, K, H, W)
        if self.training and self.aux_head is not None:
            result["aux"] = resize(self.aux_head(feats), size)[..., :h, :w]  # (B, K, H, W)
        return result


def create_model(
    name: str,
    num_classes: int,
    backbone: str = "resnet50",
    pretrained: bool | str | Path = False,
    output_stride: int | None = None,
    aux: bool = True,
    levels: Sequence[int] | None = None,
    **kwargs,
) -> Segmentor:
    """Build a segmentation model by name.

    Args:
        name: one of `list_models()`: fcn, fcn_pool, pspnet, gsag_basic, gsag_incremental,
            gsag_hybrid, deeplabv3, danet, deeplabv3plus, upernet, segformer.
        num_classes: number of classes (21 for PASCAL VOC).
        backbone: one of `list_backbones()` or any timm model name that gives feature maps,
            e.g. "convnext_tiny.fb_in22k_ft_in1k" or "swin_tiny_patch4_window7_224".
        pretrained: False (random init), True (ImageNet weights from timm's hub) or the path of
            a local `.safetensors` / `.pth` file with the backbone's weights.
        output_stride: 8, 16 or 32 where timm can dilate the backbone (None: the head's, 8 for
            most, 32 (undilated) for upernet and segformer); backbones it cannot dilate keep
            their own stride (None) and a neck brings their levels coarser than the head's
            output stride to it.
        aux: add the auxiliary FCN head on the second-to-last level (C4), used in training.
        levels: timm feature levels handed to the head (None: those at the strides the head
            reads, `head_levels(name).strides`: 8, 16, 32, i.e. C3, C4, C5, for most heads, 4 to
            32 for deeplabv3plus, upernet and segformer; for a plain ViT as many evenly spaced
            blocks).
        **kwargs: head options, e.g. head_channels, num_heads, kernel_size, dropout
            (`head_defaults(name)` lists them with their defaults).

    Returns:
        A `Segmentor`; `forward(x)` takes (B, 3, H, W) floats of any H, W.
    """
    given = {**kwargs, "levels": levels} if levels is not None else dict(kwargs)
    check_model_args(name, backbone, given, num_classes=num_classes, aux=aux)
    spec = head_levels(name)
    body = Backbone(
        backbone,
        output_stride=output_stride,
        levels=levels,
        pretrained=pretrained,
        level_strides=spec.strides,
        default_stride=spec.output_stride,
    )
    neck = make_neck(body, spec)
    head_kw = dict(kwargs)
    if "output_stride" in head_parameters(name):  # the grid the head sees
        head_kw["output_stride"] = body.output_stride if neck is None else neck.stride
    head = MODELS[name](body.channels, num_classes, **head_kw)
    aux_head = FCNHead(body.channels, num_classes, in_index=-2) if aux else None
    model = Segmentor(body, head, aux_head, neck)
    model.model_args = dict(
        name=name,
        num_classes=num_classes,
        backbone=backbone,
        output_stride=body.output_stride,
        aux=aux,
        levels=list(body.levels),
        **kwargs,
    )
    return model


def model_from_args(args: dict[str, Any]) -> Segmentor:
    """The model that `args` (a `Segmentor.model_args`, e.g. from a checkpoint) describe, with
    random weights and nothing downloaded: the one way a stored model is rebuilt.

    A stored model runs wherever it is loaded: its local attention takes "auto" where it was
    trained with "triton" (the kernels on CUDA, the same attention in the reference loop on a
    CPU, where the kernels cannot run)."""
    from gsag.models.gsag import PointwiseSelfAttention

    model = create_model(**{**args, "pretrained": False})
    for module in model.modules():
        if isinstance(module, PointwiseSelfAttention) and module.impl == "triton":
            module.impl = "auto"
    return model
