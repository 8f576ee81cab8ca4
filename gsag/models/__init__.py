"""Segmentation models: backbones, the GSAG head, baseline heads and `create_model`."""

from gsag.flops import count_gflops, count_params
from gsag.models.backbone import Backbone, list_backbones
from gsag.models.check import ModelArgError, check_model_args
from gsag.models.segmentor import (
    Segmentor,
    create_model,
    head_defaults,
    list_models,
    model_from_args,
)

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
