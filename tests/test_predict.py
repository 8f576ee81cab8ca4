"""Predictor and `gsag predict`: inputs of every kind, palette PNG masks, overlays, TTA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import gsag
from gsag.data.synth import SYNTH_CLASSES, SYNTH_PALETTE
from gsag.engine.checkpoint import FORMAT, VERSION, atomic_save
from gsag.trained.draw import overlay
from gsag.trained.predict import Predictor, list_images, predict_files, to_rgb_array

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    n = len(SYNTH_CLASSES)
    model = gsag.create_model("gsag_hybrid", n, backbone="test_resnet").eval()
    # An untrained model predicts one class almost everywhere: centre each class's logits (via
    # the classifier's bias) so that the prediction varies over the image and tests can see it.
    classifier = [m for m in model.head.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert classifier.out_channels == n
    with torch.no_grad():
        classifier.bias -= model(torch.randn(2, 3, 64, 64))["out"].mean(dim=(0, 2, 3))
    config = {
        "model": {
            "name": "gsag_hybrid",
            "backbone": "test_resnet",
            "output_stride": 8,
            "aux": True,
            "kwargs": {},
        },
        "eval": {"crop_size": 48, "stride": 32},
    }
    meta = {
        "classes": list(SYNTH_CLASSES),
        "palette": [list(c) for c in SYNTH_PALETTE],
        "num_classes": len(SYNTH_CLASSES),
        "ignore_index": 255,
        "mean": list(MEAN),
        "std": list(STD),
        "model_args": model.model_args,  # as training writes it: the widths it was built with
    }
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    atomic_save(
        {
            "format": FORMAT,
            "version": VERSION,
            "iteration": 1,
            "best_miou": 0.0,
            "model": model.state_dict(),
            "config": config,
            "meta": meta,
        },
        path,
    )
    return path


def _reference_mask(checkpoint, rgb: np.ndarray) -> np.ndarray:
    """Independent computation: load weights, normalise by hand, argmax of the main logits."""
    state = torch.load(checkpoint, weights_only=True)
    model = gsag.create_model("gsag_hybrid", len(SYNTH_CLASSES), backbone="test_resnet")
    model.load_state_dict(state["model"])
    model.eval()
    x = (rgb.astype(np.float32) / 255.0 - np.array(MEAN)) / np.array(STD)
    x = torch.from_numpy(x.transpose(2, 0, 1)).float()[None]
    with torch.no_grad():
        return model(x)["out"].argmax(1)[0].numpy()


def _image(h: int = 53, w: int = 71, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_predict_matches_reference_for_every_input_kind(checkpoint, tmp_path):
    rgb = _image()
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    predictor = gsag.Predictor(checkpoint)  # the package-level name of the same class
    assert isinstance(predictor, Predictor)
    expected = _reference_mask(checkpoint, rgb)
    assert len(np.unique(expected)) > 1
    inputs = [
        rgb,
        Image.fromarray(rgb),
        torch.from_numpy(rgb).permute(2, 0, 1),  # uint8 (3, H, W)
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0,  # float (1, 3, H, W)
        rgb.astype(np.float64) / 255.0,
        str(path),
        path,
    ]
    for image in inputs:
        mask = predictor.predict(image)
        assert mask.shape == (53, 71) and mask.dtype == np.int64
        np.testing.assert_array_equal(mask, expected)


def test_predict_proba_is_a_distribution_consistent_with_predict(checkpoint):
    predictor = Predictor(checkpoint)
    rgb = _image(40, 40, seed=1)
    probs = predictor.predict_proba(rgb)
    assert probs.shape == (len(SYNTH_CLASSES), 40, 40)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), predictor.predict(rgb))


def test_tta_is_flip_equivariant(checkpoint):
    """TTA averages an image and its mirror, so mirroring the input mirrors the logits."""
    predictor = Predictor(checkpoint, tta=True)
    rgb = _image(48, 64, seed=2)
    a = predictor.logits(rgb)
    b = predictor.logits(np.ascontiguousarray(rgb[:, ::-1]))
    torch.testing.assert_close(b, a.flip(-1), rtol=1e-4, atol=1e-4)
    plain = Predictor(checkpoint).logits(rgb)
    assert not torch.allclose(plain, a, atol=1e-4)


def test_slide_mode_on_an_image_larger_than_the_crop(checkpoint):
    predictor = Predictor(checkpoint, mode="slide")
    assert (predictor.crop_size, predictor.stride) == (48, 32)  # from the checkpoint's config
    mask = predictor.predict(_image(90, 130, seed=3))
    assert mask.shape == (90, 130)


def test_bad_inputs_are_named(checkpoint):
    predictor = Predictor(checkpoint)
    with pytest.raises(ValueError, match=r"shape \(2, 8, 8\)"):
        predictor.predict(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="floats in \\[0, 1\\]"):
        to_rgb_array(np.full((4, 4, 3), 7.0))
    with pytest.raises(ValueError, match="not one of"):
        Predictor(checkpoint, mode="sideways")


def test_overlay_blends_foreground_and_leaves_background_and_ignore_untinted():
    rgb = _image(5, 6)
    mask = np.random.default_rng(1).integers(0, 3, (5, 6))
    mask[0, :3] = 255  # ignore
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    out = np.asarray(overlay(rgb, mask, palette, alpha=0.25)).astype(np.float64)
    colours = np.asarray(palette + [(0, 0, 0)] * 253, dtype=np.float64)[mask]
    foreground = ((mask > 0) & (mask < len(palette)))[..., None]
    expected = np.where(foreground, 0.75 * rgb + 0.25 * colours, rgb)
    assert foreground.any() and not foreground.all()
    np.testing.assert_allclose(out, expected, atol=0.51)


def test_list_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images in"):
        list_images(tmp_path)
    Image.fromarray(_image(8, 8)).save(tmp_path / "a.png")
    Image.fromarray(_image(8, 8)).save(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="rename one"):
        list_images(tmp_path)


def test_predict_cli_writes_palette_masks_overlays_and_probs(checkpoint, tmp_path, synth_root):
    from gsag.cli import main

    src = tmp_path / "in"
    src.mkdir()
    for i, (h, w) in enumerate([(37, 61), (64, 64)]):
        Image.fromarray(_image(h, w, seed=10 + i)).save(src / f"img{i}.jpg")
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(checkpoint), "--input", str(src), "--out", str(out)]
    assert main([*args, "--probs"]) == 0
    predictor = Predictor(checkpoint)
    for i, size in enumerate([(37, 61), (64, 64)]):
        mask_png = Image.open(out / "masks" / f"img{i}.png")
        assert mask_png.mode == "P"
        stored = np.asarray(mask_png)
        assert stored.shape == size
        np.testing.assert_array_equal(stored, predictor.predict(src / f"img{i}.jpg"))
        flat = mask_png.getpalette()[: 3 * len(SYNTH_PALETTE)]
        assert [tuple(flat[j : j + 3]) for j in range(0, len(flat), 3)] == list(SYNTH_PALETTE)
        drawn = np.asarray(Image.open(out / "overlays" / f"img{i}.png").convert("RGB"))
        k = -(-480 // size[1])  # small images are enlarged by a whole factor
        picture = np.asarray(overlay(np.asarray(Image.open(src / f"img{i}.jpg").convert("RGB")),
                                     stored.astype(np.int64), SYNTH_PALETTE, alpha=0.6,
                                     outline=True)).repeat(k, 0).repeat(k, 1)  # fmt: skip
        np.testing.assert_array_equal(drawn[: picture.shape[0]], picture)  # the image, 1:1
        assert drawn.shape[0] > picture.shape[0]  # and the legend under it
        probs = np.load(out / "probs" / f"img{i}.npy")
        assert probs.shape == (len(SYNTH_CLASSES), *size) and probs.dtype == np.float16


def test_predict_files_reports_each_image(checkpoint, tmp_path, synth_root):
    files = sorted((synth_root / "JPEGImages").glob("val_*.jpg"))[:2]
    seen = []
    written = predict_files(
        Predictor(checkpoint), files, tmp_path, overlays=False, on_image=seen.append
    )
    assert [w.image for w in written] == files and seen == written
    assert all(w.overlay is None and w.mask.is_file() for w in written)
    assert not (tmp_path / "overlays").exists()


def test_predictor_from_safetensors_weights(checkpoint, tmp_path):
    from gsag.engine.checkpoint import export_safetensors

    weights = export_safetensors(checkpoint, tmp_path / "w.safetensors")
    rgb = _image(33, 47, seed=4)
    np.testing.assert_array_equal(
        Predictor(weights).predict(rgb), Predictor(checkpoint).predict(rgb)
    )


def test_predict_cli_slide_with_tta_and_a_pixel_budget(checkpoint, tmp_path, caplog):
    """Positional checkpoint; `--mode slide --tta` slides at every scale; a whole-image pass over
    `--max-pixels` slides instead with a notice."""
    from gsag.cli import main

    Image.fromarray(_image(40, 56, seed=7)).save(tmp_path / "one.png")
    common = ["predict", str(checkpoint), "--input", str(tmp_path / "one.png"), "--threads", "1"]
    out = tmp_path / "slide_tta"
    assert main([*common, "--out", str(out), "--mode", "slide", "--tta", "--crop-size", "32",
                 "--stride", "24", "--no-overlay"]) == 0  # fmt: skip
    reference = Predictor(checkpoint, mode="slide", tta=True, crop_size=32, stride=24)
    assert reference.window == "slide"
    stored = np.asarray(Image.open(out / "masks" / "one.png"))
    np.testing.assert_array_equal(stored, reference.predict(tmp_path / "one.png"))
    budget = tmp_path / "budget"
    assert main([*common, "--out", str(budget), "--max-pixels", "2000", "--crop-size", "32",
                 "--stride", "24"]) == 0  # fmt: skip
    assert "over the pixel budget (2000 pixels)" in caplog.text
    sliding = Predictor(checkpoint, mode="slide", crop_size=32, stride=24)
    stored = np.asarray(Image.open(budget / "masks" / "one.png"))
    np.testing.assert_array_equal(stored, sliding.predict(tmp_path / "one.png"))


def test_non_finite_logits_stop_predict_in_one_line_writing_no_mask(checkpoint, tmp_path, capsys):
    """Finite weights whose logits overflow: an all-zero mask was written, exit 0. Now the run
    stops with one line (exit 1) before any mask of that image is written."""
    from gsag.cli import main
    from gsag.engine.infer import NonFiniteLogits

    ckpt = torch.load(checkpoint, weights_only=True)
    classifier = _classifier(checkpoint)
    assert ckpt["model"][classifier].shape[0] == len(SYNTH_CLASSES)
    ckpt["model"][classifier].fill_(3e38)
    path = tmp_path / "overflow.pt"
    torch.save(ckpt, path)
    image = tmp_path / "x.png"
    Image.fromarray(_image()).save(image)
    with pytest.raises(NonFiniteLogits, match=r"the logits of a 71x53 image hold \d+ non-finite"):
        Predictor(path).predict(image)
    out = tmp_path / "out"
    assert main(["predict", str(path), "--input", str(image), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the logits of a 71x53 image") and "\n" not in err
    assert "try --amp none" in err and not list(out.rglob("*.png"))


def _classifier(checkpoint) -> str:
    """The state-dict name of the main head's last convolution (the one giving the logits)."""
    from gsag.trained.load import load_trained_model

    model, _ = load_trained_model(checkpoint)
    convs = [n for n, m in model.head.named_modules() if isinstance(m, torch.nn.Conv2d)]
    return f"head.{convs[-1]}.weight"
