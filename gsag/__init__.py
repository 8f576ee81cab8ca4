"""gsag: semantic segmentation with the Gated Self-Attention Group head.

The public names load on first use, so `import gsag` (and `gsag --help`) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gsag.lazy import lazy_attributes
from gsag.version import __version__

if TYPE_CHECKING:
    from gsag.hub import load_pretrained, push_to_hub
    from gsag.models import create_model, list_backbones, list_models
    from gsag.predict import Predictor
    from gsag.pretrained import save_pretrained

__all__ = [
    "Predictor",
    "__version__",
    "create_model",
    "list_backbones",
    "list_models",
    "load_pretrained",
    "push_to_hub",
    "save_pretrained",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "Predictor": "gsag.predict",
        "create_model": "gsag.models",
        "list_backbones": "gsag.models",
        "list_models": "gsag.models",
        "load_pretrained": "gsag.hub",
        "push_to_hub": "gsag.hub",
        "save_pretrained": "gsag.pretrained",
    },
)
