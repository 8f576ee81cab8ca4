"""Inference modes against naive references, dataset evaluation against torchmetrics, `gsag eval`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gsag
from gsag.engine.datasets import make_dataset
from gsag.engine.eval_report import write_report
from gsag.engine.evaluate import evaluate
from gsag.engine.infer import infer
from gsag.engine.train import train
from tests.helpers.configs import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


class Pointwise(nn.Module):
    """1x1 conv: each output pixel depends on its input pixel only."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 1)
        self.seen: list[tuple[int, int]] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        return {"out": self.conv(x)}


class WindowMean(nn.Module):
    """Every output pixel is the mean of its whole input: depends on the window it sees."""

    def forward(self, x):
        return {"out": x.mean((2, 3), keepdim=True).expand_as(x).clone()}


class Asymmetric(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return {"out": self.conv(x)}


def image(h=10, w=13, b=2, seed=0):
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("crop", "stride"), [(6, 4), (5, 5), (16, 8), ((4, 7), (3, 2))])
def test_slide_equals_whole_for_a_pointwise_model(crop, stride):
    torch.manual_seed(0)
    model = Pointwise().eval()
    x = image()
    whole = infer(model, x, "whole")
    model.seen.clear()
    slide = infer(model, x, "slide", crop_size=crop, stride=stride)
    torch.testing.assert_close(slide, whole)
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    assert all(h == max(ch, 10) or h == ch for h, _ in model.seen)  # never more than a window
    assert all(w == cw or w == max(cw, 13) for _, w in model.seen)


def test_slide_averages_overlapping_windows():
    x = image(h=10, w=13, b=1)
    crop, stride = 6, 4
    out = infer(WindowMean(), x, "slide", crop_size=crop, stride=stride)
    # naive reference: windows start every `stride`, the last flush with the border
    starts_y = sorted({min(s, 10 - crop) for s in range(0, 10, stride)})
    starts_x = sorted({min(s, 13 - crop) for s in range(0, 13, stride)})
    expected = torch.zeros_like(x)
    for i in range(10):
        for j in range(13):
            means = [
                x[0, :, y : y + crop, z : z + crop].mean((1, 2))
                for y in starts_y
                for z in starts_x
                if y <= i < y + crop and z <= j < z + crop
            ]
            expected[0, :, i, j] = torch.stack(means).mean(0)
    torch.testing.assert_close(out, expected)


def test_flip_averages_the_mirrored_pass():
    torch.manual_seed(0)
    model = Asymmetric().eval()
    x = image()
    expected = (model(x)["out"] + model(x.flip(-1))["out"].flip(-1)) / 2
    torch.testing.assert_close(infer(model, x, "whole", flip=True), expected)


def test_multiscale_averages_resized_passes():
    torch.manual_seed(0)
    model = Asymmetric().eval()
    x = image(h=16, w=20)
    half = F.interpolate(x, size=(8, 10), mode="bilinear", align_corners=False)
    back = F.interpolate(model(half)["out"], size=(16, 20), mode="bilinear", align_corners=False)
    expected = (back + model(x)["out"]) / 2
    torch.testing.assert_close(infer(model, x, "multiscale", scales=[0.5, 1.0]), expected)
    torch.testing.assert_close(infer(model, x, "multiscale", scales=[1.0]), model(x)["out"])


@pytest.mark.parametrize("mode", ["whole", "slide", "multiscale"])
def test_real_model_logits_at_input_size(mode):
    model = gsag.create_model("gsag_hybrid", 5, backbone="test_resnet", head_channels=16,
                              key_channels=8, num_heads=2, fuse_channels=16).eval()  # fmt: skip
    out = infer(
        model, image(h=37, w=45, b=1), mode, crop_size=32, stride=24, scales=[0.75, 1.25], flip=True
    )
    assert out.shape == (1, 5, 37, 45) and torch.isfinite(out).all()


def test_bad_mode_and_stride():
    with pytest.raises(ValueError, match="choose one of whole, slide, multiscale"):
        infer(Pointwise(), image(), "sliding")
    with pytest.raises(ValueError, match="larger than crop_size"):
        infer(Pointwise(), image(), "slide", crop_size=4, stride=6)


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("eval_run")
    cfg = tiny_config(synth_root, run, "train.iters=2")
    train(cfg, quiet=True)
    return cfg, run


def test_evaluate_matches_torchmetrics(trained):
    tm = pytest.importorskip("torchmetrics.classification")
    cfg, run = trained
    model, info = gsag.engine.checkpoint.load_model(run / "last.pt")
    dataset = make_dataset(cfg, "val", train=False)
    metrics = evaluate(model, dataset, mode="slide", crop_size=48, stride=16)
    n = info["num_classes"]
    jaccard = tm.MulticlassJaccardIndex(n, average=None, ignore_index=255)
    accuracy = tm.MulticlassAccuracy(n, average="micro", ignore_index=255)
    with torch.no_grad():
        for i in range(len(dataset)):
            img, mask = dataset[i]
            pred = infer(model, img[None], "slide", crop_size=48, stride=16).argmax(1)
            jaccard.update(pred, mask[None])
            accuracy.update(pred, mask[None])
    ious = jaccard.compute().double()
    ours = torch.tensor(metrics["IoU"], dtype=torch.float64)
    present = ~ours.isnan()  # gsag leaves a class absent everywhere out; torchmetrics says 0
    torch.testing.assert_close(ours[present], ious[present], atol=1e-6, rtol=0)
    assert (ious[~present] == 0).all()
    assert metrics["mIoU"] == pytest.approx(ious[present].mean().item())
    assert metrics["aAcc"] == pytest.approx(accuracy.compute().item())
    assert metrics["images"] == len(dataset)


def test_report_and_cli(trained, tmp_path):
    from gsag.cli import main

    cfg, run = trained
    out = tmp_path / "report"
    argv = ["eval", str(run / "best.safetensors"), "--mode", "slide", "--crop-size", "48",
            "--stride", "32", "--flip", "--out", str(out), "--quiet", "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((out / "metrics.json").read_text())
    model, info = gsag.engine.checkpoint.load_model(run / "best.safetensors")
    direct = evaluate(model, make_dataset(cfg, "val", train=False), "slide", 48, 32, flip=True)
    assert data["mIoU"] == pytest.approx(direct["mIoU"])
    assert list(data["IoU_by_class"]) == info["classes"]
    assert data["settings"]["flip"] is True
    table = (out / "metrics.md").read_text()
    assert all(name in table for name in info["classes"])
    assert (out / "confusion.png").stat().st_size > 0


def test_cli_whole_mode_over_the_pixel_budget_equals_slide(trained, tmp_path):
    from gsag.cli import main

    cfg, run = trained
    out = tmp_path / "budget"
    argv = ["eval", str(run / "best.safetensors"), "--mode", "whole", "--max-pixels", "2500",
            "--crop-size", "48", "--stride", "32", "--threads", "1", "--out", str(out),
            "--quiet", "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((out / "metrics.json").read_text())
    model, _ = gsag.engine.checkpoint.load_model(run / "best.safetensors")
    direct = evaluate(model, make_dataset(cfg, "val", train=False), "slide", 48, 32)
    assert data["mIoU"] == pytest.approx(direct["mIoU"])
    assert data["settings"]["max_pixels"] == 2500


@pytest.mark.parametrize("mode", [None, "whole", "slide"])
def test_cli_scales_make_any_mode_multiscale_and_say_so(trained, tmp_path, mode):
    """--scales without --mode multiscale runs multi-scale (as gsag predict does), with
    sliding windows at every scale for --mode slide; metrics.json records what ran."""
    from gsag.cli import main

    cfg, run = trained
    out = tmp_path / "scales"
    argv = ["eval", str(run / "best.safetensors"), "--scales", "0.5", "1.5", "--crop-size", "48",
            "--stride", "32", "--out", str(out), "--quiet", "--workers", "0"]  # fmt: skip
    assert main(argv + (["--mode", mode] if mode else [])) == 0
    data = json.loads((out / "metrics.json").read_text())
    window = "slide" if mode == "slide" else "whole"
    assert data["settings"]["mode"] == "multiscale" and data["settings"]["window"] == window
    assert data["settings"]["scales"] == [0.5, 1.5]
    model, _ = gsag.engine.checkpoint.load_model(run / "best.safetensors")
    dataset = make_dataset(cfg, "val", train=False)
    direct = evaluate(model, dataset, "multiscale", 48, 32, [0.5, 1.5], window=window)
    assert data["mIoU"] == pytest.approx(direct["mIoU"])
    # the scales change the result; shown on noisier head weights, since two iterations of
    # training can leave a model that predicts one class at every scale (it does at torch 2.4)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(torch.randn_like(p))
    scaled = evaluate(model, dataset, "multiscale", 48, 32, [0.5, 1.5], window=window)
    assert scaled["confusion"] != evaluate(model, dataset, "whole")["confusion"]


def test_cli_warns_when_the_dataset_names_classes_differently(trained, tmp_path, capsys):
    import shutil

    import yaml

    from gsag.cli import main

    cfg, run = trained
    data = shutil.copytree(cfg.data.root, tmp_path / "data")
    info = yaml.safe_load((data / "classes.yaml").read_text())
    info["classes"][3], info["classes"][5] = "zebra", "yacht"
    (data / "classes.yaml").write_text(yaml.safe_dump(info))
    argv = ["eval", str(run / "last.pt"), "--data", str(data), "--out", str(tmp_path / "e"),
            "--quiet", "--workers", "0", "--max-images", "1"]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    warning = f"warning: {data} names class 3 'zebra' where {run / 'last.pt'} has 'horse'"
    assert warning in err.replace("\n", " ") and "yacht" not in err
    assert main([*argv[:3], str(cfg.data.root), *argv[4:], "--out", str(tmp_path / "f")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_write_report_nan_becomes_null(tmp_path):
    metrics = {"IoU": [0.5, float("nan")], "Acc": [1.0, float("nan")], "mIoU": 0.5, "aAcc": 1.0,
               "mAcc": 1.0, "FWIoU": 0.5, "confusion": [[1, 0], [0, 0]], "pixels": 1}  # fmt: skip
    paths = write_report(metrics, ["a", "b"], tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["IoU_by_class"] == {"a": 0.5, "b": None}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_slide_memory_is_bounded_by_the_crop_on_a_large_image():
    model = gsag.create_model("gsag_hybrid", 21, backbone="resnet18").cuda().eval()
    big = torch.randn(1, 3, 1024, 2048, device="cuda")
    crop = torch.randn(1, 3, 512, 512, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    infer(model, crop, "whole")
    one_window = torch.cuda.max_memory_allocated() - base
    torch.cuda.reset_peak_memory_stats()
    out = infer(model, big, "slide", crop_size=512, stride=341)
    slide_peak = torch.cuda.max_memory_allocated() - base
    accumulators = 2 * out.numel() * out.element_size()  # summed logits + the returned ones
    assert out.shape == (1, 21, 1024, 2048)
    assert slide_peak < one_window + accumulators + 64 * 2**20


def test_fmt_pct_two_decimals_and_a_dash_for_missing():
    from gsag.engine.eval_report import fmt_pct

    assert fmt_pct(0.123456) == "12.35" and fmt_pct(1.0, digits=1) == "100.0"
    assert fmt_pct(float("nan")) == "–" and fmt_pct(None) == "–"
