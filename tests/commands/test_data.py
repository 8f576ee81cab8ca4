"""`gsag data synth | check` through the real command line."""

from __future__ import annotations

import numpy as np
import yaml

from gsag.data import VOCSegmentation, read_mask, save_mask


def test_synth_then_check(tmp_path, capsys):
    from gsag.cli import main

    out = tmp_path / "synth"
    argv = ["data", "synth", "--out", str(out), "--num-train", "5", "--num-val", "2"]
    assert main([*argv, "--size", "48", "--seed", "4", "--workers", "1"]) == 0
    assert len(VOCSegmentation(out, "train")) == 5 and len(VOCSegmentation(out, "val")) == 2
    capsys.readouterr()
    assert main(["data", "check", str(out)]) == 0
    text = capsys.readouterr().out
    # 5 train + 2 val + 2 test (the held-out split has as many images as val by default)
    assert "9 pairs" in text and "walker" in text and "ok" in text


def test_synth_says_how_many_images_it_wrote(tmp_path, capsys):
    """The count printed is the files on disk, the held-out test split included (it said
    "wrote 7 images" after writing 9)."""
    import re

    from gsag.cli import main

    out = tmp_path / "synth"
    argv = ["data", "synth", "--out", str(out), "--num-train", "5", "--num-val", "2"]
    assert main([*argv, "--size", "32", "--workers", "1", "--quiet"]) == 0
    written = len(list((out / "JPEGImages").glob("*.jpg")))
    said = re.search(r"wrote (\d+) images \((.*?);", capsys.readouterr().out)
    assert said is not None and int(said.group(1)) == written == 9
    assert said.group(2) == "5 train, 2 val, 2 test"


def test_synth_version_flag(tmp_path):
    from gsag.cli import main
    from gsag.commands.data import SYNTH_VERSIONS
    from gsag.data.synth import VERSION, VERSIONS

    assert SYNTH_VERSIONS == VERSIONS and SYNTH_VERSIONS[-1] == VERSION
    for version in (1, 2):
        out = tmp_path / f"v{version}"
        argv = ["data", "synth", "--out", str(out), "--num-train", "2", "--num-val", "1"]
        assert main([*argv, "--size", "32", "--workers", "1", "--version", str(version)]) == 0
        assert yaml.safe_load((out / "classes.yaml").read_text())["generator"]["version"] == version


def test_check_fails_on_bad_labels(tmp_path, capsys):
    from gsag.cli import main
    from gsag.data.synth import SYNTH_PALETTE, generate

    root = generate(tmp_path / "s", num_train=3, num_val=1, size=40, seed=2)
    path = root / "SegmentationClass" / "train_00001.png"
    mask = read_mask(path)
    mask[:3, :3] = 42
    save_mask(path, mask, SYNTH_PALETTE)
    assert main(["data", "check", str(root), "--split", "train"]) == 1
    text = capsys.readouterr().out
    assert "42" in text and "train_00001.png" in text and "1 error" in text
    assert np.all(read_mask(path)[:3, :3] == 42)  # check never rewrites data


def test_check_reports_not_a_dataset(tmp_path, capsys):
    from gsag.cli import main

    assert main(["data", "check", str(tmp_path)]) == 2  # bad input: one error path
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and "not a dataset gsag can read" in err
    assert len(err.strip().splitlines()) == 1 and "error" not in out


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_synth_refuses_to_write_over_another_dataset(tmp_path, capsys):
    """Only an empty folder or an earlier output of the same settings is written into;
    --overwrite moves anything else aside first."""
    from gsag.cli import main

    out = tmp_path / "data"
    small = ["data", "synth", "--out", str(out), "--size", "32", "--workers", "1"]
    first = [*small, "--num-train", "3", "--num-val", "1"]
    assert main(first) == 0
    before = _tree(out)
    assert main(first) == 0 and _tree(out) == before  # the same settings: the same files
    capsys.readouterr()

    other = [*small, "--num-train", "2", "--num-val", "2"]
    assert main(other) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out ") and "--overwrite" in lines[0]
    assert "'num_train': 3" in lines[0] and _tree(out) == before

    mine = tmp_path / "mine"  # a dataset that gsag did not generate
    (mine / "ImageSets").mkdir(parents=True)
    (mine / "classes.yaml").write_text("classes: [a, b]\n")
    assert main(["data", "synth", "--out", str(mine), "--num-train", "1", "--num-val", "1"]) == 2
    assert "holds other files" in capsys.readouterr().err
    assert (mine / "classes.yaml").read_text() == "classes: [a, b]\n"

    assert main([*other, "--overwrite"]) == 0
    (aside,) = tmp_path.glob("data.old-*")
    assert _tree(aside) == before
    assert len(VOCSegmentation(out, "train")) == 2 and len(VOCSegmentation(out, "val")) == 2


def test_check_reports_an_image_listed_twice_and_a_class_named_twice(tmp_path, capsys):
    """`gsag data check` names both, the file and the lines or indices, in one line each."""
    from gsag.cli import main
    from gsag.data.synth import generate

    root = generate(tmp_path / "s", num_train=3, num_val=1, size=40, seed=2)
    train = root / "ImageSets" / "Segmentation" / "train.txt"
    train.write_text(train.read_text() + "train_00001\n")
    assert main(["data", "check", str(root), "--split", "train"]) in (1, 2)
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert "train.txt: id 'train_00001' is listed 2 times (lines 2, 4)" in text
    train.write_text("train_00000\ntrain_00001\n")
    classes = root / "classes.yaml"
    classes.write_text(classes.read_text().replace("- walker", "- rider", 1))
    assert main(["data", "check", str(root), "--split", "train"]) in (1, 2)
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert "classes.yaml: class 'rider' is named 2 times" in text
