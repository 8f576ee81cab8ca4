"""Inference options: validation at entry, sliding windows at every scale, the pixel budget."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsag.engine.infer import infer


class Recorder(nn.Module):
    """A tiny segmentor that records the size of every input it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.sizes.append(tuple(x.shape[-2:]))
        return {"out": self.conv(F.avg_pool2d(x, 2))}  # (B, 4, H/2, W/2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "multiscale", "scales": [0]}, "scales"),
        ({"mode": "multiscale", "scales": [1.0, -1]}, "scales"),
        ({"mode": "multiscale", "scales": []}, "scales"),
        ({"mode": "slide", "stride": 0}, "stride 0 must be >= 1"),
        ({"mode": "slide", "crop_size": 0, "stride": 0}, "crop size 0 must be >= 1"),
        ({"mode": "multiscale", "window": "tiles"}, "window 'tiles'"),
    ],
)
def test_bad_inference_options_raise_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        infer(Recorder(), torch.zeros(1, 3, 16, 16), **{"crop_size": 8, "stride": 4, **options})


def test_multiscale_slide_runs_sliding_windows_at_every_scale():
    """window="slide" equals slide inference on each resized image, averaged (a hand-made
    reference), and every forward pass sees one crop-sized window."""
    model, x = Recorder(), torch.randn(1, 3, 40, 56)
    scales, crop, stride = [0.5, 1.0, 1.5], 16, 12
    seen = []
    out = infer(
        model, x, "multiscale", crop, stride, scales, flip=True, window="slide",
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert set(model.sizes) == {(crop, crop)}
    assert seen[-1] == (len(model.sizes), len(model.sizes)) and len(seen) == len(model.sizes)
    reference = torch.zeros_like(out)
    for s in scales:
        hw = (round(40 * s), round(56 * s))
        xs = F.interpolate(x, size=hw, mode="bilinear", align_corners=False) if s != 1 else x
        for view, unflip in ((xs, False), (xs.flip(-1), True)):
            y = infer(model, view, "slide", crop, stride)
            y = y.flip(-1) if unflip else y
            reference += F.interpolate(y, size=(40, 56), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, reference / (2 * len(scales)))


def test_whole_pass_over_the_pixel_budget_slides_with_a_notice(caplog):
    model, x = Recorder(), torch.randn(1, 3, 48, 64)
    with caplog.at_level(logging.WARNING, logger="gsag.engine.infer"):
        out = infer(model, x, "whole", crop_size=32, stride=24, max_pixels=48 * 64 - 1)
    assert "over the pixel budget" in caplog.text and len(caplog.records) == 1
    assert set(model.sizes) == {(32, 32)}
    torch.testing.assert_close(out, infer(model, x, "slide", crop_size=32, stride=24))
    model.sizes.clear()
    infer(model, x, "whole", crop_size=32, stride=24, max_pixels=48 * 64)  # at the budget
    assert model.sizes == [(48, 64)]


def test_slide_crop_larger_than_the_image_on_both_sides_is_noticed_once(caplog):
    model = Recorder()
    with caplog.at_level(logging.WARNING, logger="gsag.engine.infer"):
        infer(model, torch.randn(1, 3, 40, 56), "slide", crop_size=48, stride=32)  # one side
        infer(model, torch.randn(1, 3, 40, 56), "slide", crop_size=32, stride=24)  # fits
        assert caplog.records == []
        for _ in range(3):  # once per image size and crop, not once per image
            infer(model, torch.randn(1, 3, 36, 52), "slide", crop_size=96, stride=64)
        infer(model, torch.randn(1, 3, 36, 52), "slide", crop_size=27, stride=18)  # the advice
    assert len(caplog.records) == 1
    assert "slide crop 96x96 is larger than the 52x36 image on both sides" in caplog.text
    assert "e.g. --crop-size 27 --stride 18, or --mode whole" in caplog.text
    assert (96, 96) in model.sizes  # padded into one window, as the notice says


def test_pixel_budget_smaller_than_a_window_fails_saying_so():
    with pytest.raises(ValueError, match="raise --max-pixels"):
        infer(Recorder(), torch.randn(1, 3, 48, 64), "whole", 32, 24, max_pixels=1000)


def test_predictor_slide_with_tta_keeps_the_window(tmp_path):
    """`Predictor(mode="slide", tta=True)` slides at every TTA scale (crop and stride honoured)."""
    from gsag.config import DEFAULT_SCALES
    from gsag.trained.predict import Predictor

    model = Recorder()
    info = {
        "classes": list("abcd"),
        "palette": [(0, 0, 0)] * 4,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    predictor = Predictor.from_model(model, info, mode="slide", tta=True, crop_size=24, stride=16)
    assert (predictor.mode, predictor.window, predictor.flip) == ("multiscale", "slide", True)
    assert predictor.scales == DEFAULT_SCALES
    rgb = torch.rand(3, 40, 52)
    seen = []
    predictor.logits(rgb, progress=lambda done, total: seen.append((done, total)))
    assert set(model.sizes) == {(24, 24)}
    assert seen == [(i + 1, len(model.sizes)) for i in range(len(model.sizes))]
    plain = Predictor.from_model(Recorder(), info, tta=True)
    assert (plain.mode, plain.window) == ("multiscale", "whole")
    with pytest.raises(ValueError, match="scales"):
        Predictor.from_model(Recorder(), info, mode="multiscale", scales=[0.5, 0])


def test_config_refuses_non_positive_eval_scales():
    from gsag.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"eval.scales is \[1.0, 0.0\]; it holds 0.0"):
        load_config(None, ["eval.scales=[1.0, 0.0]"])
