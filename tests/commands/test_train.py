"""`gsag train --dry-run`: the loss, loggers and parameter groups of a config, nothing written."""

from __future__ import annotations

import pytest
import yaml

from gsag.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")


def test_dry_run_prints_the_groups_and_writes_nothing(synth_root, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"root": str(synth_root)},
        "model": {"name": "fcn", "backbone": "test_convnext", "pretrained": False, "output_stride": None, "aux": False},
        "loss": {"type": "ce+dice", "weights": [1, 0.5], "class_weights": "auto"},
        "optim": {"name": "adamw", "lr": 0.1, "weight_decay": 0.05, "layer_decay": 0.5,
                  "no_decay_norm_bias": True, "head_lr_mult": 2},
        "train": {"loggers": ["csv"]},
    }))  # fmt: skip
    out_dir = tmp_path / "run"
    assert main(["train", str(config), "--dry-run", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert not out_dir.exists()
    assert "loss: ce x 1 + dice x 0.5; class weights auto" in out
    assert "loggers: csv" in out
    rows = {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if line.startswith("│")
        for cells in [[c.strip() for c in line.strip("│").split("│")]]
    }
    # test_convnext: stem (layer 0), 4 stages (1..4); lr 0.1 x 0.5 ** (5 - layer)
    for layer in range(5):
        assert rows[f"backbone layer {layer}"][2:] == [f"{0.1 * 0.5 ** (5 - layer):.4g}", "0.05"]
        assert rows[f"backbone layer {layer}, no decay"][2:] == [
            f"{0.1 * 0.5 ** (5 - layer):.4g}",
            "0",
        ]
    assert rows["head"][2:] == ["0.2", "0.05"] and rows["head, no decay"][2:] == ["0.2", "0"]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (["loss.type=ce+dcie"],
         "loss.type is 'ce+dcie'; it must be one of ce, ohem, dice, focal, lovasz, or a sum"),
        (["loss.type=lovasz+ohem", "loss.weights=[1,2,3]"],
         "loss.weights [1.0, 2.0, 3.0] has 3 values for the 2 terms of loss.type 'lovasz+ohem'"),
        (["loss.class_weights=[1,2]"], "loss.class_weights has 2 values for the "),
        (["train.loggers=[csv,neptune]"], "it holds 'neptune'; each value must be one of"),
    ],
)  # fmt: skip
def test_a_bad_loss_or_logger_is_one_error_line_exit_2(
    synth_root, tmp_path, capsys, settings, expected
):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"root": str(synth_root)},
        "model": {"name": "fcn", "backbone": "test_resnet", "pretrained": False},
    }))  # fmt: skip
    out_dir = tmp_path / "run"
    code = main(["train", str(config), "--out", str(out_dir), "--set", *settings])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_dry_run_of_synthetic_data_not_yet_generated_counts_its_classes(tmp_path, capsys):
    """Training would generate the benchmark first: the dry run checks the class weights
    against its class count and generates nothing."""
    from gsag.data.synth import SYNTH_CLASSES

    root = tmp_path / "data"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"root": str(root), "synthetic": True},
        "model": {"name": "fcn", "backbone": "test_resnet", "pretrained": False, "aux": False},
    }))  # fmt: skip
    weights = ",".join(["1"] * len(SYNTH_CLASSES))
    assert (
        main(["train", str(config), "--dry-run", "--set", f"loss.class_weights=[{weights}]"]) == 0
    )
    assert f"{len(SYNTH_CLASSES)} classes of the synthetic benchmark" in capsys.readouterr().out
    assert main(["train", str(config), "--dry-run", "--set", "loss.class_weights=[1,2]"]) == 2
    err = capsys.readouterr().err
    assert f"loss.class_weights has 2 values for the {len(SYNTH_CLASSES)} classes" in err
    assert not root.exists()
