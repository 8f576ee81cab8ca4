"""One tool: the same idea has one spelling in every command, old spellings still parse."""

from __future__ import annotations

import pytest

from gsag.cli import build_parser, main
from gsag.commands import finish_path_argument

THREADED = ["train", "eval", "predict", "bench", "ablate", "demo"]
DEVICE = [*THREADED, "export"]
QUIET = ["train", "eval", "predict", "bench", "demo", "export"]
NEEDS = {  # the least each command needs besides the option under test
    "train": ["c.yaml"],
    "eval": ["c.pt"],
    "predict": ["c.pt", "--input", "x", "--out", "o"],
    "bench": [],
    "ablate": ["c.yaml", "--out", "o"],
    "demo": [],
    "export": ["c.pt", "--out", "o.onnx"],
}


def _parse(argv: list[str]):
    return build_parser().parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "name", "expected"),
    [
        (["predict", "a.pt", "--input", "x", "--out", "o"], "checkpoint", "a.pt"),
        (["predict", "--checkpoint", "b.pt", "--input", "x", "--out", "o"], "checkpoint", "b.pt"),
        (["export", "c.pt", "--out", "o.onnx"], "checkpoint", "c.pt"),
        (["export", "--checkpoint", "d.pt", "--out", "o.onnx"], "checkpoint", "d.pt"),
        (["ablate", "e.yaml", "--out", "o"], "config", "e.yaml"),
        (["ablate", "--config", "f.yaml", "--out", "o"], "config", "f.yaml"),
    ],
)
def test_checkpoint_and_config_positional_or_option(argv, name, expected):
    assert finish_path_argument(_parse(argv), name) == expected


@pytest.mark.parametrize(
    ("argv", "out"),
    [
        (["train", "c.yaml", "--out", "runs/x"], "runs/x"),
        (["train", "c.yaml", "--run-dir", "runs/y"], "runs/y"),
        (["data", "prepare-voc", "--out", "d1"], "d1"),
        (["data", "prepare-voc", "--data-dir", "d2"], "d2"),
        (["data", "prepare-voc"], "data"),
        (["data", "prepare-ade20k", "--out", "d3"], "d3"),
        (["data", "prepare-ade20k", "--data-dir", "d4"], "d4"),
        (["data", "prepare-ade20k"], "data"),
        (["data", "prepare-cityscapes", "--out", "c1"], "c1"),
        (["data", "prepare-cityscapes", "--root", "c2"], "c2"),
        (["data", "prepare-cityscapes"], "data/cityscapes"),
    ],
)
def test_output_folder_is_out_with_old_aliases(argv, out):
    assert _parse(argv).out == out


@pytest.mark.parametrize(
    ("argv", "old"),
    [
        (["train"], "--run-dir"),
        (["data", "prepare-ade20k"], "--data-dir"),
        (["data", "prepare-cityscapes"], "--root"),
    ],
)
def test_old_aliases_are_hidden_from_help(argv, old, capsys):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    text = capsys.readouterr().out
    assert "--out" in text and old not in text


@pytest.mark.parametrize("command", DEVICE)
def test_device_has_one_default_everywhere(command, monkeypatch):
    """Not given, --device is None when parsed and becomes cuda if available, else cpu."""
    import torch

    from gsag.commands import resolve_device

    args = _parse([command, *NEEDS[command]])
    assert args.device is None
    assert "default: cuda if available, else cpu" in _help(command)
    for available, expected in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda a=available: a)
        assert resolve_device(args.device) == expected
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("command", THREADED)
def test_threads_has_one_default_everywhere(command):
    """0: where the command trains, the config's train.num_threads or the cores free at the
    start (gsag.threads); elsewhere torch's default."""
    from gsag.commands import resolve_threads

    assert _parse([command, *NEEDS[command]]).threads == 0
    assert "default 0: where the command trains, the config's train.num_threads" in _help(command)
    assert "or the cores free at the start when that is 0 too" in _help(command)
    assert (resolve_threads(0, 3), resolve_threads(2, 3), resolve_threads(0, 0)) == (3, 2, 0)


@pytest.mark.parametrize("command", QUIET)
def test_quiet_on_every_command_with_progress(command):
    assert _parse([command, *NEEDS[command], "--quiet"]).quiet is True


def test_quiet_on_every_data_action():
    from tests.helpers.cli_text import command_parsers

    actions = [c for c in command_parsers() if c.startswith("data ")]
    assert len(actions) == 6
    for action in actions:
        assert "--quiet" in command_parsers()[action]._option_string_actions, action


def test_version(capsys):
    import gsag

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"gsag {gsag.__version__}"


def _help(command: str) -> str:
    import contextlib
    import io

    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(text.getvalue().split())  # argparse wraps help at the terminal width


def test_set_takes_several_pairs_repeatedly_and_as_cfg_options():
    args = _parse(
        ["train", "c.yaml", "--set", "a=1", "b=2", "--cfg-options", "c=3", "--set", "d=4"]
    )
    assert args.overrides == ["a=1", "b=2", "c=3", "d=4"]
    assert _parse(["ablate", "c.yaml", "--out", "o"]).overrides == []


def test_set_refuses_a_path_swallowed_after_it(capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(["train", "--set", "a=1", "configs/demo.yaml"])
    assert exc.value.code == 2
    assert "'configs/demo.yaml' is not KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("command", THREADED)
def test_device_is_one_validated_string_everywhere(command, capsys):
    assert _parse([command, *NEEDS[command], "--device", "cuda:1"]).device == "cuda:1"
    with pytest.raises(SystemExit) as exc:
        _parse([command, *NEEDS[command], "--device", "gpu"])
    assert exc.value.code == 2 and "use cpu, cuda or cuda:1" in capsys.readouterr().err


@pytest.mark.parametrize("command", THREADED)
def test_threads_everywhere(command, capsys):
    assert _parse([command, *NEEDS[command], "--threads", "3"]).threads == 3
    with pytest.raises(SystemExit):
        _parse([command, *NEEDS[command], "--threads", "-1"])
    assert "threads -1 must be in [0, 1024]" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--scales", "0"], "scale 0 must be in (0, 16]"),
        (["--scales", "1", "-1"], "scale -1 must be in (0, 16]"),
        (["--scales", "nan"], "scale nan must be a finite number in (0, 16]"),
        (["--stride", "0"], "stride 0 must be in [1, 16384]"),
        (["--crop-size", "0"], "crop size 0 must be in [1, 16384]"),
        (["--max-pixels", "0"], "max pixels 0 must be in [1, 268435456]"),
    ],
)
def test_inference_options_are_checked_when_parsed(command, option, message, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse([command, *NEEDS[command], *option])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_eval_and_predict_share_the_multiscale_flags():
    for command in ("eval", "predict"):
        args = _parse([command, *NEEDS[command], "--mode", "multiscale", "--flip", "--scales",
                       "0.5", "1"])  # fmt: skip
        assert (args.mode, args.flip, args.scales) == ("multiscale", True, [0.5, 1.0])


def test_train_threads_become_train_num_threads(monkeypatch):
    import gsag.engine.train as engine_train

    seen = {}

    def fake_train(cfg, **kwargs):
        seen["cfg"] = cfg
        raise RuntimeError("stop here")

    monkeypatch.setattr(engine_train, "train", fake_train)
    with pytest.raises(RuntimeError, match="stop here"):
        main(["train", "configs/demo.yaml", "--threads", "2", "--run-dir", "runs/somewhere"])
    assert seen["cfg"].train.num_threads == 2
    assert seen["cfg"].output.run_dir == "runs/somewhere"


def test_models_table_reports_each_model_before_measuring_it():
    from gsag.commands.models import model_table

    seen = []
    rows = model_table(
        "test_resnet", 64, 3, 8, ["fcn", "gsag_basic"], progress=lambda *a: seen.append(a)
    )
    assert seen == [(0, "fcn"), (1, "gsag_basic")] and [r["model"] for r in rows] == [
        "fcn",
        "gsag_basic",
    ]
