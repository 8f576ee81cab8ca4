"""Segmentation models: backbones, the GSAG head, baseline heads and `create_model`."""

from gsag.flops import count_gflops, count_params
from gsag.models.backbone import Backbone, list_backbones
from gsag.models.check import check_model_args
from gsag.models.errors import ModelArgError
from gsag.models.segmentor import Segmentor, create_model, model_from_args
from gsag.models.table import head_defaults, list_models

__all__ = [
    "Backbone",
    "ModelArgError",
    "Segmentor",
    "check_model_args",
    "count_gflops",
    "count_params",
    "create_model",
    "head_defaults",
    "list_backbones",
    "list_models",
    "model_from_args",
]
