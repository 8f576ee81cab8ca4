"""No command writes into a dataset: an output that is, or lies inside, a dataset root of any
layout gsag reads is refused before any work with one `error:` line (exit 2), and every file of
the dataset is left as it was. `--overwrite` moves aside only an earlier output of the same
command, whatever else a folder holds.

`gsag predict best.pt --input DS/images --out DS` replaced every ground-truth mask in
`DS/masks/` (the name the folder layout uses for labels) with predictions, exit 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.commands.test_output_faults import FILE_OUTPUTS, _argv, trained  # noqa: F401
from tests.helpers.hub import one_error_line

pytestmark = pytest.mark.usefixtures("single_thread")

#: Per layout, the folders and files that make a root of it (a label file in each).
LAYOUTS = {
    "voc": ["JPEGImages/a.jpg", "ImageSets/Segmentation/val.txt", "SegmentationClass/a.png"],
    "folder": ["images/a.jpg", "masks/a.png", "classes.yaml"],
    "cityscapes": ["leftImg8bit/val/a_leftImg8bit.png", "gtFine/val/a_gtFine_labelIds.png"],
    "ade20k": ["images/training/ADE_a.jpg", "annotations/training/ADE_a.png"],
    "context59": ["JPEGImages/a.jpg", "SegmentationClassContext/a.png"],
}
WRITERS = ["train", "demo", "eval", "predict", "save", "export", "bench", "bench --update-doc",
           "ablate"]  # fmt: skip


def _dataset(root: Path, layout: str) -> Path:
    for rel in LAYOUTS[layout]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".jpg", ".png"):
            Image.fromarray(np.full((8, 8), 7, np.uint8)).save(path)
        else:
            path.write_text("classes: [a, b]\n" if path.suffix == ".yaml" else "a\n")
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _refused(argv: list[str], capsys) -> str:
    from gsag.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    return one_error_line(capsys)


def _cases():
    for command in WRITERS:
        for where in ("root", "inside"):
            yield pytest.param(command, "voc" if where == "root" else "folder", where,
                               id=f"{command}-{where}")  # fmt: skip
    for layout in LAYOUTS:
        for command in ("predict", "train"):
            yield pytest.param(command, layout, "root", id=f"{command}-{layout}")


@pytest.mark.parametrize(("command", "layout", "where"), list(_cases()))
def test_no_command_writes_into_a_dataset(command, layout, where, trained, tmp_path, capsys):  # noqa: F811
    root = _dataset(tmp_path / "DS", layout)
    folder = root if where == "root" else root / "runs" / "x"
    out = folder / "model.onnx" if command in FILE_OUTPUTS else folder
    before = _snapshot(root)
    err = _refused(_argv(command, out, trained, tmp_path / "spare"), capsys)
    assert f"the {layout} dataset {root}" in err and "never writes into a dataset" in err, err
    assert _snapshot(root) == before and not (root / "runs").exists()


def test_predict_onto_the_dataset_it_reads_keeps_every_mask(trained, tmp_path, capsys):  # noqa: F811
    """The issue's case: the folder layout's masks/ is the name predict writes."""
    root = _dataset(tmp_path / "DS", "folder")
    before = _snapshot(root)
    argv = ["predict", str(trained["checkpoint"]), "--input", str(root / "images"), "--out",
            str(root)]  # fmt: skip
    err = _refused(argv, capsys)
    assert f"--out {root} is the folder dataset {root}" in err
    assert _snapshot(root) == before


def test_eval_refuses_an_out_inside_the_dataset_it_evaluates(trained, synth_root, tmp_path, capsys):  # noqa: F811
    """Recognised or not, the data a command reads is never its output folder."""
    out = synth_root / "reports"
    err = _refused(["eval", str(trained["checkpoint"]), "--out", str(out), "--quiet"], capsys)
    assert str(synth_root) in err and not out.exists()


def test_a_folder_with_images_alone_is_no_dataset(trained, tmp_path):  # noqa: F811
    """A user's folder that merely has an images/ subfolder (a home folder) is not refused."""
    from gsag.cli import main

    home = tmp_path / "home"
    (home / "images").mkdir(parents=True)
    out = home / "pred"
    argv = ["predict", str(trained["checkpoint"]), "--input", str(trained["image"]), "--out",
            str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0 and (out / "masks").is_dir()


def _home(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A home folder: notes, and a training run three levels down."""
    home = tmp_path / "home"
    (home / "docs").mkdir(parents=True)
    (home / "docs" / "notes.md").write_text("mine")
    run = home / "projects" / "a" / "b" / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("train: {}\n")
    (run / "metrics.jsonl").write_text("{}\n")
    return home, _snapshot(home)


def test_overwrite_never_moves_a_folder_that_is_not_the_commands_output(trained, tmp_path, capsys):  # noqa: F811
    """`--overwrite` moved a whole home folder aside. Now train, demo, data synth and save
    move aside only an earlier output of their own, and refuse anything else in one line."""
    home, before = _home(tmp_path)
    (home / "best.pt").write_bytes((trained["checkpoint"]).read_bytes())  # a run file, alone
    before = _snapshot(home)
    config = str(trained["config"])
    for argv, fragment in [
        (["train", config, "--out", str(home), "--overwrite", "--quiet"],
         "is not a gsag training run folder"),
        (["demo", "--config", config, "--out", str(home), "--overwrite"],
         "is not a gsag training run folder"),
        (["data", "synth", "--out", str(home), "--overwrite", "--num-train", "1"],
         "not an output of gsag data synth"),
        (["save", str(trained["checkpoint"].parent), str(home), "--overwrite"],
         "holds no saved gsag model"),
    ]:  # fmt: skip
        err = _refused(argv, capsys)
        assert fragment in err, err
        assert _snapshot(home) == before and sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_overwrite_refuses_a_run_folder_that_holds_other_runs_deep_down(trained, tmp_path, capsys):  # noqa: F811
    """A home folder that once was a run's --out still holds the user's projects."""
    home, _ = _home(tmp_path)
    (home / "config.yaml").write_text("train: {}\n")
    (home / "metrics.jsonl").write_text("{}\n")
    before = _snapshot(home)
    argv = ["train", str(trained["config"]), "--out", str(home), "--overwrite", "--quiet"]
    err = _refused(argv, capsys)
    assert "holds another run, projects/a/b/run" in err
    assert _snapshot(home) == before


@pytest.mark.parametrize("command", ["train", "demo"])
def test_a_run_never_replaces_a_config_yaml_that_is_not_its_own(
    command, synth_root, tmp_path, capsys
):
    """`gsag train config.yaml --out .` replaced the user's own config.yaml (comments, notes)
    with the resolved one, exit 0. A folder holding no run whose config.yaml is not the one the
    run writes is refused; the file is left as it was."""
    from gsag.config import config_text, save_config
    from tests.helpers.configs import tiny_config

    run = tmp_path / "project"
    run.mkdir()
    cfg = tiny_config(synth_root, run, "train.iters=1", "train.eval_interval=1")
    other = tiny_config(synth_root, run, "train.iters=1", "optim.lr=0.5")
    config = tmp_path / "tiny.yaml"
    save_config(cfg, config)
    argv = [command, *([] if command == "train" else ["--config"]), str(config), "--out", str(run)]
    # a fresh `train` also keeps a file of the same settings with notes; `demo` starts again
    # over one of the same settings (an interrupted demo is not stuck: `not_started`)
    notes = [config_text(cfg) + "# my notes\n"] if command == "train" else []
    for mine, extra in [(text, flag) for text in [config_text(other), *notes]
                        for flag in ([], ["--overwrite"])]:  # fmt: skip
        (run / "config.yaml").write_text(mine)
        err = _refused([*argv, "--quiet", "--threads", "1", *extra], capsys)
        assert f"{run / 'config.yaml'} is not this run's config" in err, err
        assert (run / "config.yaml").read_text() == mine
        assert sorted(p.name for p in tmp_path.iterdir()) == ["project", "tiny.yaml"]
        assert [p.name for p in run.iterdir()] == ["config.yaml"]


def test_a_run_killed_before_its_first_line_starts_again_over_its_own_config(synth_root, tmp_path):
    """The same run again over the config.yaml it wrote first (nothing else) is no refusal:
    the file would be rewritten to the same bytes."""
    from gsag.config import save_config
    from gsag.engine.train import train
    from tests.helpers.configs import tiny_config

    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.iters=1", "train.eval_interval=1")
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    train(cfg, quiet=True)
    assert (run / "last.pt").is_file()
