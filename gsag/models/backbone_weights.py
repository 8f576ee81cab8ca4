"""Loading an ImageNet classifier's weights from a local file into a backbone (`pretrained=` a
path): `.safetensors`, or a weights-only `.pth`/`.pt` state dict; never a pickle."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from gsag.errors import CheckpointError

log = logging.getLogger(__name__)


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


def _check_values(path: Path, key: str, value: Tensor, own: Tensor) -> None:
    """Refuse a tensor that `load_state_dict` would cast silently (integers for floats) or whose
    values are NaN or Inf (a broken or diverged file)."""
    if value.is_floating_point() != own.is_floating_point():
        raise CheckpointError(
            f"{path}: tensor {key!r} is {value.dtype} where the backbone holds {own.dtype}. "
            "Fix: use the weights file as it was published, not a converted copy"
        )
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise CheckpointError(
            f"{path}: tensor {key!r} holds NaN or Inf values. Fix: use an intact weights file"
        )


def load_backbone_weights(module: nn.Module, path: str | Path) -> LoadReport:
    """Load an ImageNet classifier's weights from a local file into a feature extractor.

    Accepts `.safetensors` or a weights-only `.pth`/`.pt` (a state dict, possibly under
    "state_dict" or "model"). Common prefixes ("module.", "backbone.", "model.") are stripped.
    Classifier keys (e.g. `fc.*`) end up in `unexpected`; missing keys are warned about.

    Raises:
        ValueError: no tensor matches, or a matching tensor has the wrong shape or kind
            (integers for floats) or holds NaN or Inf.
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
        _check_values(path, key, value, own[key])
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
