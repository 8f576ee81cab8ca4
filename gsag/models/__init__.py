"""Segmentation models: backbones, the GSAG head, baseline heads and `create_model`."""

from gsag.flops import count_gflops, count_params
from gsag.models.backbone import Backbone, list_backbones
from gsag.models.segmentor import Segmentor, create_model, head_kwargs, list_models

__all__ = [
    "Backbone",
    "Segmentor",
    "count_gflops",
    "count_params",
    "create_model",
    "head_kwargs",
    "list_backbones",
    "list_models",
]
