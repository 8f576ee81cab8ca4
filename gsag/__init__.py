"""gsag: semantic segmentation with the Gated Self-Attention Group head.

The public names load on first use, so `import gsag` (and `gsag --help`) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gsag.lazy import lazy_attributes
from gsag.version import __version__

if TYPE_CHECKING:
    from gsag.models import create_model, list_backbones, list_models
    from gsag.trained.load import load_pretrained
    from gsag.trained.predict import Predictor
    from gsag.trained.push import push_to_hub
    from gsag.trained.save import save_pretrained

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
        "Predictor": "gsag.trained.predict",
        "create_model": "gsag.models",
        "list_backbones": "gsag.models",
        "list_models": "gsag.models",
        "load_pretrained": "gsag.trained.load",
        "push_to_hub": "gsag.trained.push",
        "save_pretrained": "gsag.trained.save",
    },
)
