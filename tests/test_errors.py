"""One error path: every expected error is one `error: ...` line on stderr and a documented code."""

from __future__ import annotations

import os
import pickle
import shutil

import pytest
import torch

from gsag.cli import main
from gsag.config import save_config
from gsag.engine.train import train
from gsag.errors import describe
from tests.helpers.configs import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    """(config file, finished 2-iteration run folder) of the tiny test model."""
    tmp = tmp_path_factory.mktemp("errors")
    config = tmp / "tiny.yaml"
    save_config(tiny_config(synth_root, tmp / "unused", "train.iters=2"), config)
    run = tmp / "run"
    train(tiny_config(synth_root, run, "train.iters=2"), quiet=True)
    return config, run


def cli(capsys, *argv: str) -> tuple[int, str]:
    """Exit code and the single stderr line of `gsag ARGV` (fails on more than one line)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    return code, lines[0]


def test_config_error(capsys, tmp_path):
    code, line = cli(capsys, "train", tmp_path / "missing.yaml")
    assert code == 2 and f"config file {tmp_path / 'missing.yaml'} does not exist" in line


@pytest.mark.parametrize(
    ("sets", "fragment"),
    [
        (["model.kwargs.num_heads=3"], "key_channels=8 must be divisible by num_heads=3"),
        (["model.kwargs.head_channels=abc"], "model.kwargs.head_channels is 'abc'; expected int"),
        (["model.kwargs.num_head=2"], "did you mean num_heads?"),
        (["model.name=deeplabv3", "model.kwargs={output_stride: 16}"], "model.output_stride=16"),
        (["model.name=fcn", "model.kwargs={dropout: high}"], "model.kwargs.dropout is 'high'"),
    ],
)
def test_head_kwargs_are_checked_by_one_validator(capsys, trained, tmp_path, sets, fragment):
    config, _ = trained
    argv = ["train", config, "--run-dir", tmp_path / "run", "--quiet"]
    code, line = cli(capsys, *argv, *[a for s in sets for a in ("--set", s)])
    assert code == 2 and fragment in line
    assert not (tmp_path / "run").exists()  # refused before any work


def test_bad_sample_in_a_loader_worker_is_one_line(capsys, trained, synth_root, tmp_path):
    config, _ = trained
    data = shutil.copytree(synth_root, tmp_path / "data")
    bad = sorted((data / "JPEGImages").glob("train_*.jpg"))[0]
    bad.write_text("this is not a JPEG")
    argv = ["train", config, "--run-dir", tmp_path / "run", "--quiet"]
    sets = ["--set", f"data.root={data}", "--set", "train.num_workers=1"]
    code, line = cli(capsys, *argv, *sets)
    assert code == 2 and str(bad) in line and "in a data loader worker" in line


def _checkpoint_variants(run, tmp_path) -> dict[str, str]:
    """name -> path of a missing, truncated, random, foreign, malicious or corrupt file."""
    data = (run / "last.pt").read_bytes()
    files = {
        "truncated.pt": data[: len(data) // 2],
        "random.pt": os.urandom(4096),
        "corrupt.safetensors": os.urandom(4096),
        "evil.pt": pickle.dumps(os.system),  # unpickling would import and call os.system
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    return {
        "missing.pt": "does not exist",
        "truncated.pt": "could not be read safely",
        "random.pt": "could not be read safely",
        "corrupt.safetensors": "is not a readable .safetensors file",
        "evil.pt": "could not be read safely",
        "foreign.pt": "is not a gsag checkpoint",
    }


def test_bad_checkpoints_in_predict_and_eval(capsys, trained, synth_root, tmp_path):
    _, run = trained
    image = sorted((synth_root / "JPEGImages").glob("*.jpg"))[0]
    for name, fragment in _checkpoint_variants(run, tmp_path).items():
        ck = tmp_path / name
        code, line = cli(capsys, "predict", "--checkpoint", ck, "--input", image, "--out", tmp_path)
        assert code == 2 and str(ck) in line and fragment in line, line
        code, line = cli(capsys, "eval", ck, "--quiet")
        assert code == 2 and str(ck) in line, line
        code, line = cli(capsys, "export", "--checkpoint", ck, "--out", tmp_path / "m.onnx")
        assert code == 2 and str(ck) in line, line


def test_resume_of_another_model_is_refused(capsys, trained, tmp_path):
    config, run = trained
    copy = shutil.copytree(run, tmp_path / "run")
    argv = [
        "train",
        config,
        "--run-dir",
        copy,
        "--resume",
        "--quiet",
        "--set",
        "model.backbone=resnet18",
    ]
    code, line = cli(capsys, *argv)
    # refused by the resume rules (gsag.engine.run_state.RESUME_REFUSES) before any weights load
    assert code == 2 and "model.backbone 'test_resnet' -> 'resnet18'" in line
    assert "last.pt holds the weights of the model it was trained as" in line


@pytest.mark.parametrize(("name", "fragment"), [("w.pth", "cannot read"), ("w.safetensors", "")])
def test_unreadable_pretrained_file(capsys, trained, tmp_path, name, fragment):
    config, _ = trained
    weights = tmp_path / name
    weights.write_bytes(os.urandom(2048))
    argv = ["train", config, "--run-dir", tmp_path / "run", "--quiet"]
    code, line = cli(capsys, *argv, "--set", f"model.pretrained={weights}")
    assert code == 2 and str(weights) in line and fragment in line


def test_missing_and_unreadable_inputs(capsys, trained, tmp_path):
    _, run = trained
    ck = run / "last.pt"
    (tmp_path / "empty").mkdir()
    (tmp_path / "note.jpg").write_text("hello")
    for given, fragment in [
        (tmp_path / "nowhere", "does not exist"),
        (tmp_path / "empty", "no images in"),
        (tmp_path / "note.jpg", str(tmp_path / "note.jpg")),
    ]:
        code, line = cli(capsys, "predict", "--checkpoint", ck, "--input", given, "--out", tmp_path)
        assert code == 2 and fragment in line, line


def test_library_option_errors_are_one_line(capsys, trained, tmp_path):
    """Errors raised below the argument parser (colliding outputs, a window over the pixel
    budget) are usage errors too."""
    _, run = trained
    ck = run / "last.pt"
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    for name in ("a.jpg", "a.png"):
        Image.new("RGB", (40, 30)).save(photos / name)
    code, line = cli(capsys, "predict", ck, "--input", photos, "--out", tmp_path / "o")
    assert code == 2 and "would both write a.png" in line, line
    (photos / "a.png").unlink()
    code, line = cli(
        capsys, "predict", ck, "--input", photos, "--out", tmp_path / "o",
        "--max-pixels", "100", "--crop-size", "32", "--stride", "16",
    )  # fmt: skip
    assert code == 2 and "pixel budget" in line, line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(capsys, trained):
    _, run = trained
    code, line = cli(capsys, "eval", run / "last.pt", "--device", "cuda")
    assert code == 2 and "--device cuda: CUDA is not available" in line


def test_out_of_memory_is_a_failed_run(capsys, trained, monkeypatch):
    import gsag.engine.train as engine

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.70 GiB")

    monkeypatch.setattr(engine, "train", oom)
    code, line = cli(capsys, "train", trained[0], "--quiet")
    assert code == 1 and "out of memory (CUDA out of memory. Tried to allocate 1.70 GiB)" in line


def test_disk_full_names_the_file(capsys, trained, tmp_path, monkeypatch):
    def full(obj, f, *args, **kwargs):  # what torch.save raises on a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:603] . file write failed")

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    code, line = cli(capsys, "train", trained[0], "--run-dir", run, "--quiet")
    assert code == 1 and f"disk full while writing {run / 'best.pt'}" in line
    assert not [p for p in run.iterdir() if p.name.startswith(".best.pt")]  # no temp left
    enospc = OSError(28, "No space left on device", "masks/a.png")
    assert describe(enospc) == ("disk full while writing masks/a.png; free some space and rerun", 1)


def test_demo_outside_the_repository(capsys, tmp_path, monkeypatch):
    from gsag.commands import demo

    monkeypatch.chdir(tmp_path)
    assert demo.demo_config(None) == str(demo.SOURCE_ROOT / "configs" / "demo.yaml")
    monkeypatch.setattr(demo, "SOURCE_ROOT", tmp_path)  # e.g. a wheel install
    code, line = cli(capsys, "demo")
    assert code == 2 and "run it from the gsag repository root, or pass --config PATH" in line


def test_bench_unknown_model(capsys):
    code, line = cli(capsys, "bench", "--models", "gsag_hybird", "--backbones", "test_resnet")
    assert code == 2 and "--models 'gsag_hybird' is unknown; did you mean gsag_hybrid?" in line


def test_debug_shows_the_traceback_and_bugs_are_not_hidden(tmp_path, monkeypatch):
    from gsag.config import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "train", str(tmp_path / "missing.yaml")])
    import gsag.engine.train as engine

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a real bug")

    monkeypatch.setattr(engine, "train", bug)
    with pytest.raises(ZeroDivisionError):
        main(["train", "configs/demo.yaml", "--run-dir", str(tmp_path / "r")])


def _damaged_checkpoints(run, tmp_path) -> dict[str, str]:
    """name -> fragment: files with the gsag format marker whose contents are incomplete."""
    from safetensors.torch import save_file

    from gsag.engine.checkpoint import WEIGHTS_FORMAT, export_safetensors

    good = torch.load(run / "last.pt", weights_only=True)
    no_classes = {**good["meta"]}
    del no_classes["num_classes"]
    variants = {
        "no_model.pt": ({k: v for k, v in good.items() if k != "model"}, "it has no model"),
        "no_meta.pt": ({k: v for k, v in good.items() if k != "meta"}, "it has no meta"),
        "no_num_classes.pt": ({**good, "meta": no_classes}, "no meta.num_classes"),
        "model_is_text.pt": ({**good, "model": "weights"}, "model is a str, not dict"),
        "wrong_count.pt": ({**good, "meta": {**good["meta"], "num_classes": 3}}, "num_classes"),
    }
    for name, (ckpt, _) in variants.items():
        torch.save(ckpt, tmp_path / name)
    export_safetensors(run / "last.pt", tmp_path / "good.safetensors")
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "good.safetensors")
    for name, metadata in {
        "not_json.safetensors": {"format": WEIGHTS_FORMAT, "config": "{oops", "meta": "{}"},
        "empty.safetensors": {"format": WEIGHTS_FORMAT, "config": "", "meta": ""},
        "no_meta.safetensors": {"format": WEIGHTS_FORMAT, "config": "{}"},
    }.items():
        save_file(tensors, str(tmp_path / name), metadata=metadata)
    return {
        **{name: fragment for name, (_, fragment) in variants.items()},
        "not_json.safetensors": "its config metadata is not JSON",
        "empty.safetensors": "its config metadata is empty or missing",
        "no_meta.safetensors": "its meta metadata is empty or missing",
    }


def test_checkpoints_with_the_marker_but_missing_parts(capsys, trained, synth_root, tmp_path):
    _, run = trained
    image = sorted((synth_root / "JPEGImages").glob("*.jpg"))[0]
    for name, fragment in _damaged_checkpoints(run, tmp_path).items():
        ck = tmp_path / name
        code, line = cli(capsys, "eval", ck, "--quiet")
        assert code == 2 and str(ck) in line and fragment in line, line
        code, line = cli(capsys, "predict", ck, "--input", image, "--out", tmp_path / "p")
        assert code == 2 and str(ck) in line and fragment in line, line
        code, line = cli(capsys, "export", ck, "--out", tmp_path / "m.onnx")
        assert code == 2 and str(ck) in line, line


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["models", "gsag_hybird"], "model 'gsag_hybird' is unknown; did you mean gsag_hybrid?"),
        (["models", "nosuch"], "model 'nosuch' is unknown; valid: fcn, fcn_pool"),
        (["models", "--models", "fcn", "danat"], "did you mean danet?"),
        (["models", "fcn", "--backbone", "resnet5"], "did you mean resnet50 or"),
        (["export", "--out", "m.onnx"], "give exactly one of a checkpoint"),
        (["export", "c.pt", "--model", "fcn", "--out", "m.onnx"], "give exactly one of"),
    ],
)
def test_small_cli_exits_are_one_line(capsys, argv, fragment):
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.startswith("error: ") and fragment in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "text",
    [
        "intro\n<!-- bench:end -->\ntable\n<!-- bench:start -->\n",
        "<!-- bench:start -->\nold\n",
        "<!-- bench:start -->\n<!-- bench:end -->\n<!-- bench:end -->\n",
    ],
)
def test_update_doc_with_misplaced_markers_fails_before_timing(capsys, tmp_path, monkeypatch, text):
    import gsag.bench

    def timed(*args, **kwargs):
        raise AssertionError("benchmarked before checking the markers")

    monkeypatch.setattr(gsag.bench, "run_bench", timed)
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    argv = ["bench", "--models", "fcn", "--backbones", "test_resnet", "--update-doc", doc]
    code, line = cli(capsys, *argv, "--out", tmp_path / "bench")
    assert code == 2 and f"--update-doc {doc}: found" in line and "fix them" in line, line
    assert doc.read_text() == text


def test_update_doc_replaces_the_table_between_the_markers(tmp_path):
    from gsag.commands.bench import _update_doc

    doc = tmp_path / "doc.md"
    doc.write_text("a\n<!-- bench:start -->\nold\n<!-- bench:end -->\nb\n")
    _update_doc(doc, "| new |\n")
    assert doc.read_text() == "a\n<!-- bench:start -->\n| new |\n<!-- bench:end -->\nb\n"
    fresh = tmp_path / "fresh.md"
    _update_doc(fresh, "| t |\n")
    assert fresh.read_text() == "\n\n<!-- bench:start -->\n| t |\n<!-- bench:end -->\n"


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("eval", "crop_size", 0), ("eval", "scales", [float("nan")]), ("data", "std", [0, 0, 0])],
)
def test_bad_values_in_a_checkpoints_config(
    capsys, trained, synth_root, tmp_path, section, key, value
):
    """The config stored in a checkpoint is checked by the same rules as a config file."""
    _, run = trained
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["config"][section][key] = value
    bad = tmp_path / "tampered.pt"
    torch.save(ckpt, bad)
    code, line = cli(capsys, "eval", bad, "--quiet", "--workers", "0")
    assert code == 2 and f"{section}.{key} is" in line, line
    if section == "eval":
        image = sorted((synth_root / "JPEGImages").glob("*.jpg"))[0]
        code, line = cli(capsys, "predict", bad, "--input", image, "--out", tmp_path / "p")
        assert code == 2 and f"{section}.{key} is" in line, line
