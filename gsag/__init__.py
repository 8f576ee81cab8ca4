"""gsag: semantic segmentation with the Gated Self-Attention Group head."""

from gsag.models import create_model, list_backbones, list_models
from gsag.predict import Predictor

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__", "create_model", "list_backbones", "list_models"]
