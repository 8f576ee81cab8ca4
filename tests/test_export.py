"""ONNX and torch.export round trips of every model, compared with PyTorch at other sizes."""

from __future__ import annotations

import pytest
import torch

import gsag
from gsag.export import LogitsOnly, check_onnx, export_onnx, export_program

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


def test_torch_export_program_is_dynamic(tmp_path):
    # resnet18: the tiny test backbone's same-padding pool uses math.ceil, which .pt2 cannot store
    name = "gsag_hybrid"
    torch.manual_seed(0)
    model = gsag.create_model(name, 5, backbone="resnet18", aux=False).eval()
    path = export_program(model, tmp_path / f"{name}.pt2", height=64, width=64)
    program = torch.export.load(str(path)).module()
    for shape in ((1, 3, 96, 128), (3, 3, 40, 48)):
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

    import gsag.export
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
    real = gsag.export.check_onnx

    def worse(*a, **kw):
        return [dataclasses.replace(c, argmax_agreement=0.99) for c in real(*a, **kw)]

    monkeypatch.setattr(gsag.export, "check_onnx", worse)
    assert main(args) == 1
