"""ONNX and torch.export round trips of every model, compared with PyTorch at other sizes."""

from __future__ import annotations

import pytest
import torch

import gsag
from gsag.trained.export import (
    LogitsOnly,
    check_onnx,
    export_onnx,
    export_program,
    program_size_multiple,
)

pytest.importorskip("onnxruntime")

TINY = "test_resnet"


def _model(name: str, num_classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    model = gsag.create_model(name, num_classes, backbone=TINY, aux=False).eval()
    # spread the logits so that argmax agreement is a meaningful check, not a tie-break
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(3.0)
    return model


@pytest.mark.parametrize("name", gsag.list_models())
def test_onnx_matches_pytorch_at_other_sizes(name, tmp_path):
    model = _model(name)
    path = export_onnx(model, tmp_path / f"{name}.onnx", height=64, width=64)
    # sizes differ from the export size in batch, height and width (and are not multiples of 8)
    checks = check_onnx(model, path, sizes=((1, 97, 130), (3, 72, 52)))
    assert [c.shape for c in checks] == [(1, 3, 97, 130), (3, 3, 72, 52)]
    for c in checks:
        assert c.max_abs_diff < 1e-3
        assert c.argmax_agreement >= 0.999


def test_check_onnx_agrees_with_direct_onnxruntime_run(tmp_path, synth_root):
    """The reported numbers equal a hand computation on real (generated) images."""
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    model = _model("gsag_hybrid")
    path = export_onnx(model, tmp_path / "m.onnx", height=64, width=64)
    files = sorted((synth_root / "JPEGImages").glob("*.jpg"))[:2]
    images = []
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0
        x = (rgb - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
        images.append(torch.from_numpy(x.transpose(2, 0, 1)).float()[None])
    checks = check_onnx(model, path, inputs=images)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x, c in zip(images, checks, strict=True):
        got = session.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            ref = model(x)["out"].numpy()
        assert c.max_abs_diff == pytest.approx(float(np.abs(got - ref).max()), rel=1e-6, abs=1e-9)
        agree = float((got.argmax(1) == ref.argmax(1)).mean())
        assert c.argmax_agreement == pytest.approx(agree)


def test_onnx_export_is_atomic_and_leaves_no_temp_files(tmp_path):
    model = _model("fcn")
    export_onnx(model, tmp_path / "a.onnx", height=64, width=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]


# pspnet: its pyramid's cells (2, 3, 6 per side) must not fix the grid size; (3, 3, 24, 48)
# has a 3 x 6 grid at stride 8. upernet pools the 1/32 level (2 x 4 cells at 33 x 104, the
# smallest height a program takes: torch.export assumes no grid of 1 cell, docs/model.md) and
# fuses four grids; segformer and deeplabv3plus predict at 1/4. Sizes off the multiples of 32
# check that no level's grid is fixed.
@pytest.mark.parametrize(
    ("name", "shapes"),
    [
        ("gsag_hybrid", ((1, 3, 96, 128), (3, 3, 40, 48))),
        ("pspnet", ((1, 3, 96, 128), (3, 3, 24, 48), (1, 3, 16, 104))),
        ("deeplabv3plus", ((1, 3, 97, 130), (2, 3, 40, 56))),
        ("upernet", ((1, 3, 97, 130), (2, 3, 40, 56), (1, 3, 33, 104))),
        ("segformer", ((1, 3, 97, 130), (2, 3, 40, 56))),
    ],
)
def test_torch_export_program_is_dynamic(tmp_path, name, shapes):
    # resnet18: the tiny test backbone's same-padding pool uses math.ceil, which .pt2 cannot store
    torch.manual_seed(0)
    model = gsag.create_model(name, 5, backbone="resnet18", aux=False).eval()
    path = export_program(model, tmp_path / f"{name}.pt2", height=64, width=64)
    program = torch.export.load(str(path)).module()
    m = program_size_multiple()  # torch 2.4: multiples of 8, at least 4 * 8 (export_program)
    if m > 1:
        shapes = tuple((b, c, max(4 * m, -(-h // m) * m), max(4 * m, -(-w // m) * m))
                       for b, c, h, w in shapes)  # fmt: skip
    for shape in shapes:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = LogitsOnly(model)(x)
            got = program(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_dynamo_onnx_exporter(tmp_path):
    model = _model("gsag_hybrid")
    path = export_onnx(model, tmp_path / "d.onnx", height=64, width=64, dynamo=True)
    for c in check_onnx(model, path, sizes=((1, 97, 130), (2, 64, 80))):
        assert c.max_abs_diff < 1e-3
        assert c.argmax_agreement >= 0.999


def test_export_cli_checks_and_fails_below_the_agreement_threshold(
    tmp_path, synth_root, monkeypatch
):
    import dataclasses

    import gsag.trained.export
    from gsag.cli import main

    out = tmp_path / "m.onnx"
    args = ["export", "--model", "fcn", "--backbone", TINY, "--num-classes", "3",
            "--out", str(out), "--height", "64", "--width", "64",
            "--check-images", str(synth_root / "JPEGImages")]  # fmt: skip
    assert main(args) == 0 and out.is_file()
    # a threshold above 100 % is refused when parsed; an agreement below it fails the command
    with pytest.raises(SystemExit) as exc:
        main([*args, "--min-agreement", "1.01"])
    assert exc.value.code == 2
    real = gsag.trained.export.check_onnx

    def worse(*a, **kw):
        return [dataclasses.replace(c, argmax_agreement=0.99) for c in real(*a, **kw)]

    monkeypatch.setattr(gsag.trained.export, "check_onnx", worse)
    assert main(args) == 1


def _checkpoint(tmp_path, backbone: str = TINY):
    """A gsag .pt checkpoint with its own normalisation, classes and palette (not the defaults)."""
    from gsag.engine.checkpoint import FORMAT, VERSION, atomic_save

    model = _model("fcn", 3) if backbone == TINY else _resnet18_model("fcn", 3)
    meta = {
        "classes": ["sky", "road", "walker"],
        "palette": [[10, 20, 30], [40, 50, 60], [70, 80, 90]],
        "num_classes": 3,
        "ignore_index": 254,
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
    }
    config = {"model": {"name": "fcn", "backbone": backbone, "output_stride": 8, "aux": False}}
    path = tmp_path / "best.pt"
    atomic_save({"format": FORMAT, "version": VERSION, "iteration": 1, "best_miou": 0.0,
                 "model": model.state_dict(), "config": config, "meta": meta}, path)  # fmt: skip
    return path, meta


def _resnet18_model(name: str, num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return gsag.create_model(name, num_classes, backbone="resnet18", aux=False).eval()


def _expect_metadata(props: dict, meta: dict) -> None:
    import json

    assert props["gsag_version"] == gsag.__version__
    assert json.loads(props["mean"]) == meta["mean"] and json.loads(props["std"]) == meta["std"]
    assert props["input_channel_order"] == "RGB" and props["input_range"].startswith("0-1")
    assert json.loads(props["classes"]) == meta["classes"]
    assert json.loads(props["palette"]) == meta["palette"]
    assert props["ignore_index"] == str(meta["ignore_index"])
    args = json.loads(props["model_args"])
    assert (args["name"], args["num_classes"]) == ("fcn", 3)


def test_onnx_export_carries_the_preprocessing_metadata(tmp_path):
    """Read back with onnx itself (not gsag's reader) and with onnxruntime."""
    import onnx
    import onnxruntime as ort

    from gsag.cli import main

    ckpt, meta = _checkpoint(tmp_path)
    out = tmp_path / "m.onnx"
    argv = ["export", str(ckpt), "--out", str(out), "--height", "64", "--width", "64", "--quiet"]
    assert main(argv) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    _expect_metadata(props, meta)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == props


def test_pt2_export_carries_metadata_and_is_checked_like_onnx(tmp_path, capsys):
    import json

    from gsag.cli import main
    from gsag.trained.export import PT2_METADATA

    ckpt, meta = _checkpoint(tmp_path, backbone="resnet18")
    out = tmp_path / "m.pt2"
    argv = ["export", str(ckpt), "--out", str(out), "--height", "64", "--width", "64", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "the loaded .pt2 program vs PyTorch" in printed and "100.000 %" in printed
    extra = {PT2_METADATA: ""}
    torch.export.load(str(out), extra_files=extra)  # torch's own reader
    _expect_metadata(json.loads(extra[PT2_METADATA]), meta)


def test_check_program_agrees_with_a_direct_run(tmp_path):
    from gsag.trained.export import check_program

    model = _resnet18_model("gsag_hybrid", 5)
    path = export_program(model, tmp_path / "p.pt2", height=64, width=64)
    x = torch.randn(2, 3, 72, 56, generator=torch.Generator().manual_seed(1))
    (check,) = check_program(model, path, inputs=[x])
    with torch.no_grad():
        got = torch.export.load(str(path)).module()(x)
        ref = model(x)["out"]
    assert check.shape == (2, 3, 72, 56)
    assert check.max_abs_diff == pytest.approx((got - ref).abs().max().item(), abs=1e-7)
    assert check.argmax_agreement == pytest.approx((got.argmax(1) == ref.argmax(1)).float().mean())


@pytest.mark.parametrize("name", ["m.xyz", "m", "m.onnx.tmp"])
def test_export_refuses_an_unknown_suffix(tmp_path, capsys, name):
    from gsag.cli import main

    out = tmp_path / name
    assert main(["export", "--model", "fcn", "--backbone", TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: --out {out}: unknown suffix") and ".onnx" in err and ".pt2" in err
    )
    assert list(tmp_path.iterdir()) == []


def _overflowing_checkpoint(tmp_path):
    """A checkpoint whose weights are all finite but whose logits overflow to Inf and NaN."""
    from gsag.engine.checkpoint import load_checkpoint

    path, _ = _checkpoint(tmp_path)
    ckpt = load_checkpoint(path)
    ckpt["model"]["head.classifier.weight"].fill_(3e38)
    torch.save(ckpt, path)
    return path


def test_export_check_fails_on_non_finite_logits(tmp_path, capsys):
    """The check printed "max |diff| nan, argmax agreement 100.000 %" and passed; a NaN is never
    agreement. (The .pt2 check runs the same comparison, `_compare`, tested below.)"""
    from gsag.cli import main

    ckpt = _overflowing_checkpoint(tmp_path)
    out = tmp_path / "m.onnx"
    argv = ["export", str(ckpt), "--out", str(out), "--height", "32", "--width", "32", "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the logits of PyTorch on a 130x97 input hold") and "\n" not in err
    assert "non-finite value(s) (NaN or Inf)" in err and "the model is broken" in err


def test_the_check_compares_non_finite_exports_as_failures(tmp_path):
    """An export whose output is NaN where PyTorch's is finite fails the same way."""
    from gsag.engine.infer import NonFiniteLogits
    from gsag.trained.export import _compare

    model = _model("fcn", 3)
    x = [torch.randn(1, 3, 32, 40)]
    with pytest.raises(NonFiniteLogits, match="the logits of the export on a 40x32 input"):
        _compare(model, lambda t: torch.full((1, 3, 32, 40), float("nan")), "the export", x, (), 0)


def test_export_of_an_untrained_model_records_its_backbones_mean_and_std(
    tmp_path, synth_root, monkeypatch
):
    """`gsag export --model` writes the backbone's own normalisation, mean as mean and std as
    std (a backbone whose mean differs from its std, read from timm's config independently),
    and normalises --check-images with the same values."""
    import json

    import onnx
    from timm.models import get_pretrained_cfg

    import gsag.trained.predict as predict
    from gsag.cli import main

    cfg = get_pretrained_cfg("test_byobnet")
    mean, std = [float(v) for v in cfg.mean], [float(v) for v in cfg.std]
    assert mean != std  # else a swap could not show
    seen = []
    real = predict.normalise
    monkeypatch.setattr(
        predict, "normalise", lambda rgb, m, s: seen.append((m, s)) or real(rgb, m, s)
    )
    out = tmp_path / "m.onnx"
    argv = ["export", "--model", "fcn", "--backbone", "test_byobnet", "--num-classes", "3",
            "--out", str(out), "--height", "32", "--width", "32", "--quiet",
            "--check-images", str(synth_root / "JPEGImages")]  # fmt: skip
    assert main(argv) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["mean"]) == mean and json.loads(props["std"]) == std
    assert "classes" not in props and json.loads(props["model_args"])["backbone"] == "test_byobnet"
    assert seen and all((list(m), list(s)) == (mean, std) for m, s in seen)


def test_an_export_that_fails_is_one_error_line_exit_1(tmp_path, monkeypatch, capsys):
    """A program that cannot be saved (test_resnet's same-padding pool computes a shape with
    math.ceil) and any exporter's own exception are one `error:` line naming the other format,
    exit 1, never a traceback (probe 2026-12-08: `gsag export ... --out m.pt2` printed one)."""
    import gsag.trained.export
    from gsag.cli import main

    base = ["export", "--model", "fcn", "--backbone", TINY, "--num-classes", "3",
            "--height", "64", "--width", "64", "--quiet"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "m.pt2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: torch.export captured the model but could not save it")
    assert err.count("\n") == 1 and "ONNX" in err and not (tmp_path / "m.pt2").exists()

    def broken(*args, **kwargs):
        raise ValueError("an operator the exporter does not know\nsecond line")

    monkeypatch.setattr(gsag.trained.export, "export_onnx", broken)
    assert main([*base, "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: {tmp_path / 'm.onnx'}: the model could not be exported (ValueError: an "
                   "operator the exporter does not know); try a .pt2 program (--out NAME.pt2)\n")  # fmt: skip
