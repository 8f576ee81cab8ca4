"""`gsag eval` folders are named by every setting that changes the numbers, and metrics.md /
metrics.json say what they cover."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from gsag.cli import main
from gsag.commands.evaluate import eval_tag
from gsag.engine.train import train
from tests.helpers.configs import tiny_config


def _eval(mode="whole", crop_size=512, stride=341, scales=(0.5, 1.0), flip=False):
    return SimpleNamespace(mode=mode, crop_size=crop_size, stride=stride, scales=scales, flip=flip)


def test_eval_tags_differ_by_every_setting_that_changes_the_numbers():
    tags = [
        eval_tag("val", _eval()),
        eval_tag("val", _eval(), max_images=20),
        eval_tag("val", _eval(flip=True)),
        eval_tag("train", _eval()),
        eval_tag("val", _eval("slide", 512, 341)),
        eval_tag("val", _eval("slide", 96, 341)),
        eval_tag("val", _eval("slide", 96, 64)),
        eval_tag("val", _eval("slide", [96, 128], [64, 64])),
        eval_tag("val", _eval("multiscale", scales=(0.5, 1.0))),
        eval_tag("val", _eval("multiscale", scales=(0.75, 1.0, 1.25))),
    ]
    assert len(set(tags)) == len(tags), tags
    assert tags[0] == "val_whole"  # whole ignores crop, stride and scales: same folder
    assert eval_tag("val", _eval(crop_size=96, scales=(2.0,))) == "val_whole"
    assert tags[4] == "val_slide_crop512_stride341" and tags[1] == "val_whole_first20"
    assert (
        tags[7] == "val_slide_crop96x128_stride64x64" and tags[9] == "val_multiscale_s0.75-1-1.25"
    )


@pytest.fixture(scope="module")
def checkpoint(synth_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("eval_cmd_run")
    train(tiny_config(synth_root, run, "train.iters=2"), quiet=True)
    return run / "best.safetensors"


def test_two_slide_crops_and_a_subset_write_three_folders(checkpoint, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    shutil.copy(checkpoint, ckpt)
    common = [str(ckpt), "--quiet", "--workers", "0", "--threads", "1"]
    runs = [
        (["--mode", "slide", "--crop-size", "48", "--stride", "32"], "slide_crop48_stride32"),
        (["--mode", "slide", "--crop-size", "32", "--stride", "32"], "slide_crop32_stride32"),
        (["--max-images", "1"], "whole_first1"),
    ]
    for options, tag in runs:
        assert main(["eval", *common, *options]) == 0
        assert (tmp_path / f"eval_m-safetensors_val_{tag}" / "metrics.json").is_file(), tag
    assert len(list(tmp_path.glob("eval_*"))) == 3

    folder = tmp_path / "eval_m-safetensors_val_slide_crop48_stride32"
    settings = json.loads((folder / "metrics.json").read_text())["settings"]
    total = json.loads(
        (tmp_path / "eval_m-safetensors_val_whole_first1" / "metrics.json").read_text()
    )
    assert (settings["checkpoint"], settings["mode"]) == (str(ckpt), "slide")
    assert (settings["crop_size"], settings["stride"], settings["flip"]) == (48, 32, False)
    assert settings["images"] > 1 and total["settings"]["images"] == total["images"] == 1
    text = (folder / "metrics.md").read_text()
    for row in (f"| checkpoint | {ckpt} |", "| mode | slide |", "| crop_size | 48 |",
                "| stride | 32 |", "| flip | False |", f"| images | {settings['images']} |"):  # fmt: skip
        assert row in text, row
    assert settings["scales"] is None and "| scales |" not in text  # no scales ran in slide mode


def test_non_finite_logits_stop_eval_instead_of_reporting_an_miou(checkpoint, tmp_path, capsys):
    """Finite weights whose logits overflow to Inf/NaN: argmax made them class 0 and eval printed
    an mIoU like a real model's. Now one line, exit 1, no report."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    state = load_file(str(checkpoint))
    with safe_open(str(checkpoint), framework="pt") as f:
        metadata = f.metadata()
    for name in [k for k, v in state.items() if k.startswith("head.") and v.ndim == 4]:
        state[name] = state[name] * 1e30  # finite, but two of them in a row overflow
    path = tmp_path / "overflow.safetensors"
    save_file(state, str(path), metadata=metadata)
    out = tmp_path / "report"
    argv = ["eval", str(path), "--quiet", "--workers", "0", "--threads", "1", "--out", str(out)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: the logits of a 64x64 image hold") and "\n" not in err
    assert "mIoU" not in captured.out and not out.exists()


def test_evaluations_never_overwrite_each_other(evaluated_run, synth_root, tmp_path, capsys):
    """`gsag eval run/best.pt` then `run/last.pt` both wrote run/eval_val_whole/, losing the first
    report. Each checkpoint now has its own folder; an --out (or a default folder) holding
    another checkpoint's or another dataset's evaluation is refused; the same evaluation again
    rewrites its own folder."""
    run = Path(shutil.copytree(evaluated_run, tmp_path / "run"))
    common = ["--quiet", "--workers", "0", "--threads", "1"]
    best = (run / "eval_best_val_whole" / "metrics.json").read_bytes()
    assert main(["eval", str(run / "last.pt"), *common]) == 0
    assert (run / "eval_best_val_whole" / "metrics.json").read_bytes() == best
    last = json.loads((run / "eval_last_val_whole" / "metrics.json").read_text())
    assert last["settings"]["checkpoint"] == str(run / "last.pt")
    assert main(["eval", str(run / "last.pt"), *common]) == 0  # the same again: its own folder

    out = tmp_path / "report"
    assert main(["eval", str(run / "best.pt"), *common, "--out", str(out)]) == 0
    before = (out / "metrics.json").read_bytes()
    capsys.readouterr()
    assert main(["eval", str(run / "last.pt"), *common, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --out {out} holds the evaluation of {run / 'best.pt'}")
    assert "never overwrite each other" in err and "\n" not in err
    assert (out / "metrics.json").read_bytes() == before

    other = Path(shutil.copytree(synth_root, tmp_path / "copy"))
    assert main(["eval", str(run / "best.pt"), *common, "--data", str(other)]) == 2
    assert f"on {synth_root}" in capsys.readouterr().err
    assert (run / "eval_best_val_whole" / "metrics.json").read_bytes() == best
