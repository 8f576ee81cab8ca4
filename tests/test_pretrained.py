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
