"""Backbones: timm feature extractors with a chosen output stride and feature levels.

A backbone returns a list of feature maps, one per level; `channels` and `reductions` (read from
timm's `feature_info`) tell the heads what they get. For ResNets the levels are C2=1, C3=2, C4=3,
C5=4; the default `(2, 3, 4)` gives C3, C4, C5. At output stride 8 the last two stages are
dilated (the "D8" setting), so C3, C4 and C5 all lie on the 1/8 grid.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from gsag.config import OUTPUT_STRIDES
from gsag.errors import CheckpointError

if TYPE_CHECKING:
    from timm.models import FeatureInfo

log = logging.getLogger(__name__)

# Our name -> timm model name and pretrained tag. The three backbones of the GSAG description
# (docs/design.md), deep-stem variants, and small ones for tests and CPUs. ResNets use the
# original torchvision ImageNet weights (`tv_in1k`), as torchvision's segmentation models and
# most published baselines do.
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

DEFAULT_LEVELS = (2, 3, 4)


def list_backbones() -> list[str]:
    """Names accepted by `create_backbone` and `gsag.create_model(backbone=...)`."""
    return list(BACKBONES)


@dataclass
class LoadReport:
    """What happened when a local weights file was loaded into a backbone."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        def short(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

        lines = [f"loaded {len(self.loaded)} tensors from {self.path}"]
        if self.missing:
            lines.append(f"missing (left at random init): {short(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected (ignored): {short(self.unexpected)}")
        return "; ".join(lines)


class Backbone(nn.Module):
    """A timm `features_only` network returning one feature map per requested level.

    Attributes:
        name: our backbone name.
        levels: timm `out_indices` of the returned maps.
        channels: channels of each returned map.
        reductions: stride of each returned map relative to the input.
        load_report: set when weights came from a local file.
    """

    def __init__(
        self,
        name: str,
        output_stride: int = 8,
        levels: Sequence[int] = DEFAULT_LEVELS,
        pretrained: bool | str | Path = False,
    ) -> None:
        super().__init__()
        import timm

        if name not in BACKBONES:
            raise ValueError(
                f"unknown backbone {name!r}; valid backbones: {', '.join(list_backbones())}"
            )
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(
                f"output_stride={output_stride} is not supported; use one of {OUTPUT_STRIDES}"
            )
        self.name = name
        self.levels = tuple(int(i) for i in levels)
        kwargs: dict[str, Any] = dict(
            features_only=True, out_indices=self.levels, output_stride=output_stride
        )
        use_hub = pretrained is True
        try:
            self.body = timm.create_model(BACKBONES[name], pretrained=use_hub, **kwargs)
        except Exception as err:
            if not use_hub:
                raise
            raise RuntimeError(
                f"could not download pretrained weights for backbone {name!r} from the Hugging "
                f"Face hub ({type(err).__name__}: {err}). Fix: connect to the internet (or set "
                f"HF_ENDPOINT to a mirror; HF_HUB_OFFLINE=1 skips the retries), or download the "
                f"weights elsewhere and pass "
                f"pretrained='path/to/{name}.safetensors'."
            ) from err
        feature_info = cast("FeatureInfo", self.body.feature_info)
        self.channels: list[int] = list(feature_info.channels())
        self.reductions: list[int] = list(feature_info.reduction())
        self.load_report: LoadReport | None = None
        if isinstance(pretrained, str | Path):  # a local weights file (True: the hub, above)
            self.load_report = load_backbone_weights(self.body, pretrained)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.body(x)  # [(B, C_i, H / r_i, W / r_i) for each level]


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file {path} does not exist; pass the path of a .safetensors "
            f"or .pth file, or pretrained=True to download from the hub"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # SafetensorError, OSError
            raise CheckpointError(
                f"cannot read {path} as .safetensors ({type(err).__name__}: {err}). Fix: pass "
                "an intact weights file"
            ) from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read {path} as a weights-only PyTorch file ({err}). Fix: save a plain "
            f"state dict (torch.save(model.state_dict(), ...)) or a .safetensors file"
        ) from err
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return obj


def load_backbone_weights(module: nn.Module, path: str | Path) -> LoadReport:
    """Load an ImageNet classifier's weights from a local file into a feature extractor.

    Accepts `.safetensors` or a weights-only `.pth`/`.pt` (a state dict, possibly under
    "state_dict" or "model"). Common prefixes ("module.", "backbone.", "model.") are stripped.
    Classifier keys (e.g. `fc.*`) end up in `unexpected`; missing keys are warned about.

    Raises:
        ValueError: no tensor matches, or a matching tensor has the wrong shape.
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = module.state_dict()
    for prefix in ("module.", "backbone.", "model.", "encoder."):
        if not any(k in own for k in state) and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    report = LoadReport(path=str(path))
    matched: dict[str, Tensor] = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
            continue
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"{path}: tensor {key!r} has shape {tuple(value.shape)}, the backbone expects "
                f"{tuple(own[key].shape)}. Fix: use weights of the same architecture"
            )
        matched[key] = value
    if not matched:
        raise CheckpointError(
            f"none of the {len(state)} tensors in {path} match the backbone (first keys: "
            f"{', '.join(list(state)[:4])}). Fix: pass weights of the same timm architecture"
        )
    module.load_state_dict(matched, strict=False)
    report.loaded = sorted(matched)
    report.missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    if report.missing:
        warnings.warn(f"backbone weights: {report}", stacklevel=3)
    else:
        log.info("backbone weights: %s", report)
    return report
