"""Backbones: feature levels, output stride, and local / hub pretrained weights."""

from __future__ import annotations

import re

import pytest
import timm
import torch
from safetensors.torch import save_file

import gsag
from gsag.models.backbone import Backbone, load_backbone_weights

TINY = "test_resnet"


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_levels_and_reductions_match_outputs(output_stride):
    backbone = Backbone(TINY, output_stride=output_stride).eval()
    feats = backbone(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == backbone.channels
    assert [(64 // r, 96 // r) for r in backbone.reductions] == [f.shape[-2:] for f in feats]
    assert backbone.reductions[-1] == output_stride
    assert backbone.reductions == [min(r, output_stride) for r in (8, 16, 32)]


def test_custom_levels():
    backbone = Backbone(TINY, levels=(1, 4))
    assert backbone.reductions == [4, 8]
    model = gsag.create_model("gsag_hybrid", 3, backbone=TINY, levels=(1, 4), head_channels=16)
    model.train()
    out = model(torch.randn(2, 3, 30, 34))
    assert out["out"].shape == out["aux"].shape == (2, 3, 30, 34)


@pytest.mark.parametrize("output_stride", [16, 32])
def test_hybrid_fuses_levels_of_different_sizes(output_stride):
    model = gsag.create_model(
        "gsag_hybrid", 4, backbone=TINY, output_stride=output_stride, head_channels=16
    ).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 70, 50))["out"].shape == (1, 4, 70, 50)


def test_bad_output_stride():
    with pytest.raises(ValueError, match="output_stride=4"):
        Backbone(TINY, output_stride=4)


def classifier_state(seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(TINY, pretrained=False).state_dict()


def assert_loaded(backbone: Backbone, state: dict[str, torch.Tensor]) -> None:
    own = backbone.body.state_dict()
    shared = [k for k in own if k in state]
    assert len(shared) > 10
    for key in shared:
        assert torch.equal(own[key], state[key]), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_from_local_file(tmp_path, suffix):
    state = classifier_state()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    model = gsag.create_model("fcn", 3, backbone=TINY, pretrained=str(path))
    assert_loaded(model.backbone, state)
    report = model.backbone.load_report
    assert report.missing == []
    assert report.unexpected and all(k.startswith("fc.") for k in report.unexpected)
    assert "unexpected" in str(report)


def test_pretrained_wrapped_and_prefixed(tmp_path):
    state = classifier_state()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    backbone = Backbone(TINY, pretrained=path)
    assert_loaded(backbone, state)


def test_pretrained_partial_file_warns_about_missing(tmp_path):
    state = {k: v for k, v in classifier_state().items() if not k.startswith("layer4.")}
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.warns(UserWarning, match="missing"):
        backbone = Backbone(TINY, pretrained=path)
    assert backbone.load_report.missing
    assert all(k.startswith("layer4.") for k in backbone.load_report.missing)


def test_pretrained_shape_mismatch_names_tensor(tmp_path):
    state = classifier_state()
    state["conv1.0.weight"] = torch.zeros(2, 2, 1, 1)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"conv1\.0\.weight.*\(2, 2, 1, 1\)"):
        Backbone(TINY, pretrained=path)


@pytest.mark.parametrize(
    ("fault", "problem"), [("nan", "holds NaN or Inf"), ("integer", "is torch.int64 where")]
)
def test_pretrained_nan_or_integer_tensor_names_it(tmp_path, fault, problem):
    """`load_state_dict` would take both silently: NaN, and integers cast to float."""
    state = classifier_state()
    w = state["conv1.0.weight"]
    state["conv1.0.weight"] = w.round().long() if fault == "integer" else w.fill_(float("nan"))
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=rf"'conv1\.0\.weight' {problem}"):
        Backbone(TINY, pretrained=path)


def test_pretrained_unrelated_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"encoder.w": torch.zeros(3)}, str(path))
    with pytest.raises(ValueError, match="none of the 1 tensors"):
        load_backbone_weights(Backbone(TINY).body, path)


def test_pretrained_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.pth"):
        Backbone(TINY, pretrained=tmp_path / "nothere.pth")


class NotWeights:
    pass


def test_pretrained_refuses_pickled_objects(tmp_path):
    path = tmp_path / "pickle.pth"
    torch.save({"obj": NotWeights()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        Backbone(TINY, pretrained=path)


def test_pretrained_hub_failure_names_the_fix(monkeypatch):
    real = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(
        RuntimeError, match=re.escape("pretrained='path/to/test_resnet.safetensors'")
    ):
        Backbone(TINY, pretrained=True)


def test_short_names_take_any_input_size():
    """`check_model_args` skips the meta-device probe for our short names (it would import timm
    for `gsag models`): each must pass that probe, so the skip can never let one through that
    takes only its pretraining size."""
    from gsag.models.backbone import BACKBONES, probe_backbone

    for name in BACKBONES:
        assert probe_backbone(name).info, name  # raises ModelArgError if it cannot
