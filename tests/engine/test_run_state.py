"""What a resume may change: honoured changes take effect and are printed; the others are
refused before anything in the run folder is written."""

from __future__ import annotations

import json

import pytest

from gsag.config import ConfigError
from gsag.engine.run_state import RESUME_REFUSES, config_changes
from gsag.engine.schedule import poly_lr
from gsag.engine.train import train
from tests.helpers.configs import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


@pytest.fixture(scope="module")
def stopped(synth_root, tmp_path_factory):
    """A run killed after iteration 2 of 4 (last.pt at 2), and a copy maker."""
    import shutil

    base = tmp_path_factory.mktemp("stopped") / "run"
    train(tiny_config(synth_root, base, "train.eval_interval=4"), quiet=True, stop_after=2)

    def copy(to):
        shutil.copytree(base, to)
        return to

    return copy


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


#: One change per key of `RESUME_REFUSES`, written out here so that a key dropped from the table
#: (or a table entry that stops refusing) fails a test.
REFUSED_CHANGES = [
    "model.name=gsag_basic",
    "model.backbone=resnet18",
    "model.output_stride=32",
    "model.aux=false",
    "model.kwargs.head_channels=8",
    "optim.name=adamw",
    "optim.lr=0.02",
    "optim.head_lr_mult=10.0",
    "optim.momentum=0.5",
    "optim.weight_decay=0.001",
    "train.seed=3",
    "train.batch_size=4",
    "train.amp=bf16",
    "optim.layer_decay=0.9",
    "optim.no_decay_norm_bias=true",
]


def test_every_refused_key_is_tested():
    tested = {c.split("=")[0] for c in REFUSED_CHANGES}
    assert {k.rstrip(".") for k in RESUME_REFUSES} == {
        "model.kwargs" if k.startswith("model.kwargs.") else k for k in tested
    }


@pytest.mark.parametrize("change", REFUSED_CHANGES)
def test_a_change_the_checkpoint_cannot_honour_is_refused_before_any_write(
    change, stopped, synth_root, tmp_path
):
    run = stopped(tmp_path / "run")
    before = _snapshot(run)
    cfg = tiny_config(synth_root, run, "train.eval_interval=4", change)
    key = change.split("=")[0]
    with pytest.raises(ConfigError, match=rf"cannot resume .*last.pt with changed settings: {key}"):
        train(cfg, quiet=True, resume=True)
    assert _snapshot(run) == before  # config.yaml, metrics.jsonl, last.pt untouched


def test_allowed_changes_take_effect_and_are_printed(stopped, synth_root, tmp_path, capsys):
    run = stopped(tmp_path / "run")
    cfg = tiny_config(
        synth_root, run, "train.eval_interval=4", "train.iters=6", "optim.grad_clip=1.0"
    )
    capsys.readouterr()
    result = train(cfg, quiet=False, resume=True)
    err = capsys.readouterr().err
    assert "resuming with changed settings: " in err
    assert "optim.grad_clip 0.0 -> 1.0" in err and "train.iters 4 -> 6" in err
    assert result["iteration"] == 6
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    lr = {r["iteration"]: r["lr"] for r in rows if r["type"] == "train"}
    # the poly schedule now decays over 6 iterations, not 4
    assert lr[3] == pytest.approx(poly_lr(3, 0.01, 6, 0.9, 1e-4))
    assert lr[3] != pytest.approx(poly_lr(3, 0.01, 4, 0.9, 1e-4))


def test_fewer_iters_than_done_is_refused(stopped, synth_root, tmp_path):
    run = stopped(tmp_path / "run")
    cfg = tiny_config(synth_root, run, "train.eval_interval=1", "train.iters=1")
    with pytest.raises(ConfigError, match=r"train\.iters 1 is below the 2 iterations"):
        train(cfg, quiet=True, resume=True)


def test_cli_names_every_refused_key_in_one_line(stopped, synth_root, tmp_path, capsys):
    from gsag.cli import main
    from gsag.config import save_config

    run = stopped(tmp_path / "run")
    config = tmp_path / "changed.yaml"
    save_config(tiny_config(synth_root, run, "train.eval_interval=4", "optim.lr=0.5"), config)
    before = _snapshot(run)
    argv = ["train", str(config), "--resume", "--quiet", "--set", "optim.name=adamw"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "optim.lr 0.01 -> 0.5" in lines[0] and "optim.name 'sgd' -> 'adamw'" in lines[0]
    assert _snapshot(run) == before


def test_config_changes_flattens_nested_keys(synth_root, tmp_path):
    a = tiny_config(synth_root, tmp_path)
    b = tiny_config(synth_root, tmp_path, "model.kwargs.num_heads=4", "eval.flip=true")
    assert config_changes(a.to_dict(), b) == {
        "eval.flip": (False, True),
        "model.kwargs.num_heads": (2, 4),
    }
    assert "model.kwargs." in RESUME_REFUSES and "train.iters" not in RESUME_REFUSES


def test_a_value_spelled_otherwise_is_no_change(stopped, synth_root, tmp_path, capsys):
    """A head option set to its default and `train.amp` as it resolves on this device are the
    values last.pt was trained with: resumed, not refused."""
    run = stopped(tmp_path / "run")
    same = ("model.kwargs.attention_impl=auto", "train.amp=none")
    cfg = tiny_config(synth_root, run, "train.eval_interval=4", *same)
    capsys.readouterr()
    assert train(cfg, quiet=True, resume=True)["iteration"] == 4
    assert "resuming with changed settings" not in capsys.readouterr().err


def test_changed_settings_are_warned_about_with_quiet_too(stopped, synth_root, tmp_path, capsys):
    run = stopped(tmp_path / "run")
    cfg = tiny_config(synth_root, run, "train.eval_interval=4", "optim.grad_clip=1.0")
    capsys.readouterr()
    train(cfg, quiet=True, resume=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "changed settings" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: resuming with changed settings: ")
    assert "optim.grad_clip 0.0 -> 1.0" in lines[0]
