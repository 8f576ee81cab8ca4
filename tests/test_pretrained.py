"""gsag.trained.save and gsag.trained.folder: the folder round trip, kept settings, the aux
head, and the one-line errors for folders that are not gsag models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gsag.data.synth import SYNTH_CLASSES, SYNTH_PALETTE
from gsag.trained.load import load_pretrained
from gsag.trained.predict import Predictor
from gsag.trained.save import save_pretrained
from tests.helpers.hub import folder_files, one_error_line, random_image

pytestmark = pytest.mark.usefixtures("single_thread")


def test_round_trip_through_a_folder_equals_the_checkpoint(evaluated_run, pretrained):
    assert folder_files(pretrained) == {"README.md", "config.json", "model.safetensors",
                                  "plots/curve.png", "plots/confusion.png"}  # fmt: skip
    checkpoint = torch.load(evaluated_run / "best.pt", weights_only=True)
    weights = load_file(str(pretrained / "model.safetensors"))
    expected = {k: v for k, v in checkpoint["model"].items() if not k.startswith("aux_head.")}
    assert weights.keys() == expected.keys() and len(expected) < len(checkpoint["model"])
    assert all(torch.equal(weights[k], expected[k]) for k in expected)

    image = random_image()
    for options in ({}, {"mode": "slide"}, {"tta": True}):
        reference = Predictor(evaluated_run / "best.pt", **options)
        loaded = Predictor.from_pretrained(pretrained, **options)
        assert torch.equal(loaded.logits(image), reference.logits(image)), options
        assert (loaded.crop_size, loaded.stride, loaded.scales, loaded.flip) == (
            reference.crop_size, reference.stride, reference.scales, reference.flip
        )  # fmt: skip
    assert loaded.classes == SYNTH_CLASSES and loaded.palette == list(SYNTH_PALETTE)
    assert (loaded.mean, loaded.std) == (reference.mean, reference.std)
    assert loaded.meta["config"]["eval"] == checkpoint["config"]["eval"]
    config = json.loads((pretrained / "config.json").read_text())
    assert config["eval"]["crop_size"] == checkpoint["config"]["eval"]["crop_size"]
    assert config["model_args"] == {**checkpoint["meta"]["model_args"], "aux": False}
    assert load_pretrained(pretrained).aux_head is None


def test_include_aux_keeps_every_weight(evaluated_run, tmp_path):
    folder = save_pretrained(evaluated_run / "best.pt", tmp_path / "m", include_aux=True)
    state = torch.load(evaluated_run / "best.pt", weights_only=True)["model"]
    weights = load_file(str(folder / "model.safetensors"))
    assert weights.keys() == state.keys()
    model = load_pretrained(folder)
    assert model.aux_head is not None and model.model_args["aux"] is True


def test_not_a_gsag_model_is_one_line_naming_what_is_missing(
    evaluated_run, pretrained, tmp_path, capsys
):
    from gsag.cli import main

    Image.fromarray(random_image()).save(tmp_path / "x.png")

    def predict(source: Path | str) -> str:
        args = ["predict", str(source), "--input", str(tmp_path / "x.png")]
        assert main([*args, "--out", str(tmp_path / "out")]) == 2
        return one_error_line(capsys)

    config = json.loads((pretrained / "config.json").read_text())
    cases = {
        "foreign": ({"model_type": "bert"}, "has no format='gsag-pretrained'"),
        "partial": ({k: v for k, v in config.items() if k not in ("palette", "eval")},
                    "lacks palette, eval"),
        "newer": ({**config, "format_version": 2, "gsag_version": "9.0.0"},
                  "saved by gsag 9.0.0 in folder format 2; this gsag 0.1.0 reads format 1: upgrade"),
    }  # fmt: skip
    for name, (content, expected) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(pretrained / "model.safetensors", folder)
        (folder / "config.json").write_text(json.dumps(content))
        assert expected in predict(folder), name
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    shutil.copy(pretrained / "model.safetensors", no_config)
    assert "is not a gsag model: it has no config.json (model.safetensors)" in predict(no_config)
    err = predict(evaluated_run)
    assert "is a training run folder" in err and f"pass {evaluated_run}/best.pt" in err
    assert "is not a Hub reference" in predict("hf://just-a-name")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def test_save_refuses_a_saved_model_and_overwrite_moves_it_aside_whole(
    evaluated_run, tmp_path, capsys
):
    """`gsag save` into a folder holding a saved model replaced its weights, config and card
    and deleted its plots, with no --overwrite. Now it refuses, as train and data synth do;
    with --overwrite the old folder is moved to FOLDER.old-<time>, every file in it."""
    from gsag.cli import main

    folder = save_pretrained(evaluated_run, tmp_path / "m")
    (folder / "plots" / "mine.png").write_bytes(b"a plot of mine")
    before = _snapshot(folder)
    argv = ["save", str(evaluated_run), str(folder), "--checkpoint", "last.pt"]
    assert main(argv) == 2
    err = one_error_line(capsys)
    assert f"{folder} already holds a saved model" in err and "--overwrite" in err
    assert _snapshot(folder) == before
    with pytest.raises(Exception, match="already holds a saved model"):
        save_pretrained(evaluated_run / "last.pt", folder)
    assert _snapshot(folder) == before

    assert main([*argv, "--overwrite"]) == 0
    (aside,) = tmp_path.glob("m.old-*")
    assert _snapshot(aside) == before
    assert "plots/mine.png" not in _snapshot(folder)
    last = torch.load(evaluated_run / "last.pt", weights_only=True)["model"]
    weights = load_file(str(folder / "model.safetensors"))
    assert all(torch.equal(weights[k], last[k]) for k in weights)


def test_save_never_touches_a_folder_that_merely_says_gsag(evaluated_run, tmp_path, capsys):
    """Its config.json said gsag-pretrained, and the user's README.md was overwritten."""
    from gsag.cli import main

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "config.json").write_text('{"format": "gsag-pretrained"}')
    (folder / "README.md").write_text("my notes")
    before = _snapshot(folder)
    for extra in ([], ["--overwrite"]):
        assert main(["save", str(evaluated_run), str(folder), *extra]) == 2
        assert "holds no saved gsag model" in one_error_line(capsys)
        assert _snapshot(folder) == before and sorted(tmp_path.iterdir()) == [folder]


@pytest.mark.parametrize("stage", ["card", "plots"])
def test_a_save_that_fails_halfway_leaves_the_folder_as_it_was(
    stage, evaluated_run, tmp_path, monkeypatch
):
    """A save that failed after the weights left one run's weights beside another's config and
    card, and predict loaded the mix. The folder is now written whole or not at all."""
    import gsag.trained.save as save

    folder = save_pretrained(evaluated_run / "best.pt", tmp_path / "m")
    before = _snapshot(folder)

    def fail(*args, **kwargs):
        raise OSError(f"the disk went away while writing the {stage}")

    monkeypatch.setattr(save, "render_card" if stage == "card" else "write_plots", fail)
    for target in (folder, tmp_path / "new"):
        with pytest.raises(OSError, match="disk went away"):
            save_pretrained(evaluated_run / "last.pt", target, overwrite=True)
    assert _snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no half folder, no temp folder
    reference = Predictor(evaluated_run / "best.pt")
    image = random_image()
    assert torch.equal(Predictor.from_pretrained(folder).logits(image), reference.logits(image))


def test_save_pretrained_takes_a_bare_model_from_create_model(tmp_path):
    """Defaults from the model (the backbone's mean and std, class_0.., the default palette),
    overridden by meta= or keywords; the card says the classes are unnamed; the folder loads
    back and predicts as the model in memory (normalised here by hand)."""
    import numpy as np
    from huggingface_hub import ModelCard
    from timm.models import get_pretrained_cfg

    import gsag
    from gsag.data.io import voc_colormap
    from gsag.errors import CheckpointError

    torch.manual_seed(0)
    model = gsag.create_model("fcn", 3, backbone="test_byobnet", aux=False).eval()
    folder = gsag.save_pretrained(model, tmp_path / "bare")
    config = json.loads((folder / "config.json").read_text())
    timm_cfg = get_pretrained_cfg("test_byobnet")
    assert config["input"]["mean"] == list(timm_cfg.mean) != config["input"]["std"]
    assert config["input"]["std"] == list(timm_cfg.std)
    assert config["classes"] == ["class_0", "class_1", "class_2"]
    assert config["palette"] == [list(c) for c in voc_colormap(3)]
    assert "The classes are unnamed" in ModelCard.load(folder / "README.md").text

    image = random_image()
    x = (image.astype(np.float32) / 255 - np.array(timm_cfg.mean)) / np.array(timm_cfg.std)
    with torch.no_grad():
        expected = model(torch.from_numpy(x.transpose(2, 0, 1)).float()[None])["out"]
    loaded = gsag.Predictor.from_pretrained(folder)
    assert torch.allclose(loaded.logits(image), expected, atol=1e-5)
    assert np.array_equal(loaded.predict(image), expected.argmax(1)[0].numpy())

    named = gsag.save_pretrained(model, tmp_path / "named", meta={"classes": ["a", "b", "c"]},
                                 mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])  # fmt: skip
    config = json.loads((named / "config.json").read_text())
    assert config["classes"] == ["a", "b", "c"] and config["input"]["std"] == [0.25] * 3
    assert "unnamed" not in (named / "README.md").read_text()
    with pytest.raises(CheckpointError, match="classes names 2 classes but the model has 3"):
        gsag.save_pretrained(model, tmp_path / "wrong", classes=["a", "b"])
    assert not (tmp_path / "wrong").exists()
