"""gsag.models.table: the short-name backbones' features as timm builds them, and the heads
built from them, so that `gsag models` counts parameters without timm."""

from __future__ import annotations

import pytest
import torch

from gsag.flops import count_params
from gsag.models import create_model, list_models
from gsag.models.backbone import BACKBONES, Backbone
from gsag.models.table import BACKBONE_FEATURES


def test_every_short_name_backbone_has_its_features_recorded():
    assert list(BACKBONE_FEATURES) == list(BACKBONES)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_recorded_features_are_what_timm_builds(name):
    with torch.device("meta"):
        body = Backbone(name, level_strides=(4, 8, 16, 32), default_stride=32)
    channels, params = BACKBONE_FEATURES[name]
    assert channels == dict(zip(body.reductions, body.channels, strict=True))
    assert params == count_params(body)
    with torch.device("meta"):  # the default levels (C3..C5) hold the same parameters
        assert count_params(Backbone(name)) == params


@pytest.mark.parametrize("backbone", ["test_resnet", "resnet18"])
@pytest.mark.parametrize("output_stride", [None, 16])
def test_head_params_equal_the_whole_models_count(backbone, output_stride):
    """The count `gsag models` prints (backbone from the table + the head alone) is the count
    of the model `create_model` builds, for every model."""
    from gsag.commands.models import head_params

    for name in list_models():
        with torch.device("meta"):
            model = create_model(name, 21, backbone=backbone, output_stride=output_stride,
                                 aux=False)  # fmt: skip
        expected = (count_params(model), model.model_args["output_stride"])
        assert head_params(name, backbone, 21, output_stride) == expected, name
    assert head_params("fcn", "convnext_tiny", 21, None) is None  # not in the table: built
