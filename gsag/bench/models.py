"""The models `gsag bench` builds: gsag's, by name with random weights, and torchvision's
DeepLabV3 (`PEER`) beside them."""

from __future__ import annotations

from torch import nn

from gsag.bench.rows import BASELINE, PEER


def valid_models() -> list[str]:
    """Model names `gsag bench` accepts: gsag's models and the torchvision peer."""
    from gsag.models import list_models

    return [*list_models(), PEER]


def default_models() -> list[str]:
    """The models `gsag bench` compares by default: all of gsag's, the baseline added last."""
    from gsag.models import list_models

    return [name for name in list_models() if name != BASELINE]


def build_model(
    name: str, backbone: str, aux: bool, num_classes: int = 21, model_kwargs: dict | None = None
) -> nn.Module:
    """A randomly initialised model; `PEER` is torchvision's DeepLabV3 (its own ResNet-50)."""
    if name == PEER:
        from torchvision.models.segmentation import deeplabv3_resnet50

        return deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux
        )
    from gsag.models.segmentor import create_model

    # create_model, not model_from_args: a new model, with today's defaults (model_from_args
    # rebuilds stored ones, with the GSAG head widths of their time)
    return create_model(name, num_classes, backbone=backbone, aux=aux, **(model_kwargs or {}))
