"""Every command that writes refuses an output path it cannot write before it starts working:
one `error:` line naming the path, exit 1 or 2, nothing written.

The faults: the output is a file (or, for a file output, a folder), it sits below a file, it is
a read-only folder, or its missing parents would have to be made inside a read-only folder.
Tests run as root in CI, where chmod does not stop writes, so there `os.access` is made to
report the chmod-ed folder read-only (as it does for other users, or a read-only mount).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.configs import TINY_CLI_SETS, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")

DIR_FAULTS = {
    "is_file": "afile",
    "below_file": "afile/sub/out",
    "read_only": "ro",
    "missing_parent": "ro/missing/out",
}
FILE_FAULTS = {
    "is_folder": "adir",
    "below_file": "afile/model.onnx",
    "read_only": "ro/model.onnx",
    "missing_parent": "ro/missing/model.onnx",
}


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory) -> dict[str, Path]:
    """A tiny config file and a checkpoint trained with it for one iteration."""
    from gsag.config import save_config
    from gsag.engine.train import train

    folder = tmp_path_factory.mktemp("trained")
    cfg = tiny_config(synth_root, folder / "run", "train.iters=1", "train.eval_interval=1")
    config = folder / "tiny.yaml"
    save_config(cfg, config)
    train(cfg, quiet=True)
    image = next((synth_root / "JPEGImages").glob("val_*.jpg"))
    return {"config": config, "checkpoint": folder / "run" / "best.pt", "image": image}


def _argv(command: str, out: Path, t: dict[str, Path], spare: Path) -> list[str]:
    """`command`'s arguments writing to `out` (and to the writable folder `spare` otherwise)."""
    ckpt, config = str(t["checkpoint"]), str(t["config"])
    return {
        "train": ["train", config, "--out", str(out), "--quiet"],
        "demo": ["demo", "--config", config, "--out", str(out), *TINY_CLI_SETS],
        "eval": ["eval", ckpt, "--out", str(out), "--quiet", "--workers", "0"],
        "predict": ["predict", ckpt, "--input", str(t["image"]), "--out", str(out)],
        "save": ["save", str(t["checkpoint"].parent), str(out)],
        "export": ["export", ckpt, "--out", str(out), "--height", "32", "--width", "32"],
        "bench": ["bench", "--models", "fcn", "--backbones", "test_resnet", "--sizes", "32",
                  "--no-train", "--no-memory", "--warmup", "0", "--repeats", "1", "--rounds",
                  "1", "--out", str(out)],
        "bench --update-doc": ["bench", "--models", "fcn", "--backbones", "test_resnet",
                               "--sizes", "32", "--no-train", "--no-memory", "--warmup", "0",
                               "--repeats", "1", "--rounds", "1", "--out",
                               str(spare), "--update-doc", str(out)],
        "ablate": ["ablate", config, "--models", "fcn", "--seeds", "0", "--out", str(out),
                   *TINY_CLI_SETS],
        "data synth": ["data", "synth", "--out", str(out), "--num-train", "1", "--num-val",
                       "1", "--size", "32", "--workers", "1"],
        "data prepare-cityscapes": ["data", "prepare-cityscapes", "--root", str(out)],
        "data prepare-ade20k": ["data", "prepare-ade20k", "--data-dir", str(out), "--zip",
                                str(spare / "ADEChallengeData2016.zip")],
        "data prepare-context": ["data", "prepare-context", "--voc2010", str(out),
                                 "--annotations", str(spare / "trainval.tar.gz")],
    }[command]  # fmt: skip


FILE_OUTPUTS = {"export", "bench --update-doc"}
COMMANDS = ["train", "demo", "eval", "predict", "save", "export", "bench", "bench --update-doc",
            "ablate", "data synth", "data prepare-cityscapes", "data prepare-ade20k",
            "data prepare-context"]  # fmt: skip


def _faulty_tree(tmp_path: Path, monkeypatch) -> Path:
    """tmp_path/work with a file `afile`, an empty folder `adir` and a read-only folder `ro`."""
    work = tmp_path / "work"
    (work / "adir").mkdir(parents=True)
    (work / "afile").write_text("mine")
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: report it read-only as for any other user
        real_access = os.access

        def access(path, mode, *args, **kwargs):
            where = Path(os.path.abspath(path))
            if (where == ro or ro in where.parents) and mode & os.W_OK:
                return False
            return real_access(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
    return work


def _cases():
    for command in COMMANDS:
        faults = FILE_FAULTS if command in FILE_OUTPUTS else DIR_FAULTS
        for fault, rel in faults.items():
            yield pytest.param(command, rel, id=f"{command}-{fault}")


@pytest.mark.parametrize(("command", "rel"), list(_cases()))
def test_every_command_refuses_an_output_it_cannot_write(
    command, rel, trained, tmp_path, monkeypatch, capsys
):
    from gsag.cli import main

    work = _faulty_tree(tmp_path, monkeypatch)
    out = work / rel
    capsys.readouterr()
    try:
        code = main(_argv(command, out, trained, tmp_path / "spare"))
    finally:
        (work / "ro").chmod(0o755)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code in (1, 2), err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(out) in lines[0]
    # nothing was written: the file is intact, the folders are as they were
    assert (work / "afile").read_text() == "mine"
    assert sorted(p.name for p in work.iterdir()) == ["adir", "afile", "ro"]
    assert list((work / "ro").iterdir()) == [] and list((work / "adir").iterdir()) == []


def test_eval_refuses_a_read_only_folder_beside_the_checkpoint(trained, tmp_path, capsys):
    """Without --out the report goes beside the checkpoint; that folder is checked as well."""
    import shutil

    from gsag.cli import main

    below_file = tmp_path / "ckpt"
    below_file.mkdir()
    ckpt = shutil.copy(trained["checkpoint"], below_file / "best.pt")
    (below_file / "eval_best_val_whole").write_text("a file where the report folder goes")
    assert main(["eval", str(ckpt), "--quiet", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "eval_best_val_whole" in err and "is a file" in err


def test_eval_prints_the_metrics_when_the_report_cannot_be_written(trained, tmp_path, capsys):
    """The report folder passes the check but one of its files cannot be replaced: the metrics
    are printed all the same, then one error line and exit 1."""
    from gsag.cli import main

    out = tmp_path / "report"
    (out / "metrics.md").mkdir(parents=True)  # a folder where the report file goes
    code = main(["eval", str(trained["checkpoint"]), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "mIoU" in captured.out and "aAcc / mAcc" in captured.out
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the metrics are printed above")
    assert str(out) in lines[0]


@pytest.mark.parametrize("command", ["train", "demo"])
@pytest.mark.parametrize("name", ["exp #2", "2026", "null", "a: b", "[x]"])
def test_out_is_a_path_as_typed(command, name, trained, tmp_path, monkeypatch, capsys):
    """`--out` of train and demo is never parsed as YAML: a `#`, a number or `null` is part of
    the folder name."""
    import gsag.engine.train as engine
    from gsag.cli import main
    from gsag.errors import RunFolderError

    seen = []

    def fake_train(cfg, **kwargs):
        seen.append(cfg.output.run_dir)
        raise RunFolderError("stopped here by the test")

    monkeypatch.setattr(engine, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    argv = ["--config", str(trained["config"])] if command == "demo" else [str(trained["config"])]
    assert main([command, *argv, "--out", name]) == 2
    assert "stopped here by the test" in capsys.readouterr().err
    assert seen == [name]
