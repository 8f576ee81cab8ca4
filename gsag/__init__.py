"""gsag: semantic segmentation with the Gated Self-Attention Group head."""

from gsag.models.segmentor import create_model, list_backbones, list_models

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_backbones", "list_models"]
