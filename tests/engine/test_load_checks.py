"""Loaded weights and metadata are checked for what they are, for every way a model loads (a
`.pt` checkpoint, `.safetensors` weights, a pretrained folder, `hf://` from the Hub cache, and
`last.pt` on `--resume`), through the API and through `gsag predict` / `gsag eval` / `gsag
train --resume`: one error line naming the tensor or field, exit 2, nothing written.

Each case starts from a good model (the session's tiny run), breaks one thing, and expects the
load to fail; a good copy of each kind loads, so a failure is the broken thing's.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.helpers.hub import cache_repo, one_error_line

pytestmark = pytest.mark.usefixtures("single_thread")

KINDS = ["pt", "safetensors", "folder", "hf"]
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
Change = Callable[[dict, dict], None]  # (state dict, meta with classes/palette/mean/std) -> None


def _head_tensor(state: dict) -> str:
    """A floating-point tensor of the main head, the same in every kind of file."""
    return min(k for k, v in state.items() if k.startswith("head.") and v.is_floating_point())


def _write(kind: str, change: Change, run: Path, pretrained: Path, tmp: Path, cache: Path) -> str:
    """A copy of the tiny model as `kind`, broken by `change`; returns the checkpoint argument."""
    from safetensors.torch import load_file, save_file

    if kind == "pt":
        ckpt = torch.load(run / "best.pt", weights_only=True)
        change(ckpt["model"], ckpt["meta"])
        torch.save(ckpt, tmp / "m.pt")
        return str(tmp / "m.pt")
    if kind == "safetensors":
        from safetensors import safe_open

        from gsag.engine.checkpoint import export_safetensors

        good = export_safetensors(run / "best.pt", tmp / "good.safetensors")
        with safe_open(str(good), framework="pt") as f:
            metadata = f.metadata()
        state, meta = load_file(str(good)), json.loads(metadata["meta"])
        change(state, meta)
        path = tmp / "m.safetensors"
        save_file(state, str(path), metadata={**metadata, "meta": json.dumps(meta)})
        return str(path)
    folder = Path(shutil.copytree(pretrained, tmp / "folder"))
    config = json.loads((folder / "config.json").read_text())
    state = load_file(str(folder / "model.safetensors"))
    meta = {k: config[k] for k in ("classes", "palette")}
    meta.update({k: config["input"][k] for k in ("mean", "std")})
    change(state, meta)
    for key in ("classes", "palette"):
        config.pop(key, None)
    config["input"] = {k: v for k, v in config["input"].items() if k not in ("mean", "std")}
    for key, value in meta.items():
        (config["input"] if key in ("mean", "std") else config)[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if kind == "folder":
        return str(folder)
    cache_repo(cache, "your-name/broken", folder, COMMIT)
    return "hf://your-name/broken"


def _nan(state, meta):
    state[_head_tensor(state)][..., 0] = float("nan")


def _inf(state, meta):
    state[_head_tensor(state)].view(-1)[0] = float("-inf")


def _integer(state, meta):
    name = _head_tensor(state)
    state[name] = state[name].round().to(torch.int64)


def _missing(state, meta):
    del state[_head_tensor(state)]


def _extra(state, meta):
    state["head.extra.weight"] = torch.zeros(3)


def _renamed(state, meta):
    name = _head_tensor(state)
    state[name + "_renamed"] = state.pop(name)


WEIGHT_FAULTS: dict[str, tuple[Change, str]] = {
    "nan": (_nan, r"tensor {t} holds \d+ non-finite value"),
    "inf": (_inf, r"tensor {t} holds 1 non-finite value"),
    "integer": (
        _integer,
        r"tensor {t} is torch.int64 \(integer\) where the model holds torch.float32",
    ),
    "missing": (_missing, r"does not fit its model: it lacks {t};"),
    "extra": (_extra, r"it holds head.extra.weight, which the model does not have"),
    "renamed": (_renamed, r"it lacks {t}; it holds {t}_renamed, .* \(renamed tensors\?\)"),
}


def _set(key, value):
    def change(state, meta):
        meta[key] = value(meta[key]) if callable(value) else value

    return change


def _drop(key):
    return lambda state, meta: meta.pop(key)


def _five_names(state, meta):
    meta["classes"] = meta["classes"][:5]
    if "num_classes" in meta:  # a checkpoint's meta says how many it names
        meta["num_classes"] = 5


META_FAULTS: dict[str, tuple[Change, str]] = {
    "five_names": (_five_names, r"classes names 5 classes but the model has 8 outputs"),
    "classes_int": (_set("classes", 8), r"classes is (8|a int), not (a )?list"),
    "classes_twice": (_set("classes", lambda c: [c[0], *c[:-1]]), r"classes names '\w+' more"),
    "no_mean": (_drop("mean"), r"mean is missing"),
    "mean_text": (_set("mean", ["a", "b", "c"]), r"mean is \['a', 'b', 'c'\], not three finite"),
    "std_zero": (_set("std", [0.2, 0.0, 0.2]), r"std is \[0.2, 0.0, 0.2\]; every value must be"),
    "palette_300": (_set("palette", lambda p: [[300, 0, 0], *p[1:]]), r"palette entry 0 is"),
    "palette_short": (
        _set("palette", lambda p: p[:2]),
        r"(palette is .*, not a list of 8|names 8 classes and 2 colours)",
    ),
}


def _good(kind, evaluated_run, pretrained, tmp_path, offline_cache) -> str:
    return _write(kind, lambda s, m: None, evaluated_run, pretrained, tmp_path, offline_cache)


@pytest.mark.parametrize("kind", KINDS)
def test_a_good_copy_of_each_kind_loads_and_predicts_as_the_checkpoint(
    kind, evaluated_run, pretrained, tmp_path, offline_cache
):
    from gsag.trained.load import load_trained_model

    source = _good(kind, evaluated_run, pretrained, tmp_path, offline_cache)
    model, meta = load_trained_model(source)
    reference, theirs = load_trained_model(evaluated_run / "best.pt")
    x = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(model(x)["out"], reference(x)["out"])
    assert meta["classes"] == theirs["classes"] and len(meta["classes"]) == 8
    assert (list(meta["mean"]), list(meta["std"])) == (list(theirs["mean"]), list(theirs["std"]))


@pytest.mark.parametrize("fault", [*WEIGHT_FAULTS, *META_FAULTS])
@pytest.mark.parametrize("kind", KINDS)
def test_broken_weights_or_metadata_are_refused_naming_the_tensor_or_field(
    kind, fault, evaluated_run, pretrained, tmp_path, offline_cache
):
    from gsag.errors import CheckpointError
    from gsag.trained.load import load_trained_model

    change, pattern = {**WEIGHT_FAULTS, **META_FAULTS}[fault]
    source = _write(kind, change, evaluated_run, pretrained, tmp_path, offline_cache)
    state = torch.load(evaluated_run / "best.pt", weights_only=True)["model"]
    expected = pattern.format(t=_head_tensor(state).replace(".", r"\."))
    with pytest.raises(CheckpointError, match=expected) as err:
        load_trained_model(source)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kind", "fault"),
    [("pt", "nan"), ("safetensors", "renamed"), ("folder", "five_names"), ("hf", "integer"),
     ("folder", "missing"), ("pt", "extra"), ("hf", "no_mean"), ("safetensors", "palette_300")],
)  # fmt: skip
def test_gsag_predict_refuses_them_in_one_line_and_writes_nothing(
    kind, fault, evaluated_run, pretrained, synth_root, tmp_path, offline_cache, capsys
):
    from gsag.cli import main

    change, pattern = {**WEIGHT_FAULTS, **META_FAULTS}[fault]
    source = _write(kind, change, evaluated_run, pretrained, tmp_path, offline_cache)
    image = next((synth_root / "JPEGImages").glob("val_*.jpg"))
    out = tmp_path / "out"
    assert main(["predict", source, "--input", str(image), "--out", str(out), "--quiet"]) == 2
    err = one_error_line(capsys)
    state = torch.load(evaluated_run / "best.pt", weights_only=True)["model"]
    assert re.search(pattern.format(t=_head_tensor(state).replace(".", r"\.")), err), err
    assert not out.exists()


def test_gsag_eval_of_an_all_nan_model_stops_instead_of_reporting_an_miou(
    evaluated_run, tmp_path, capsys
):
    from gsag.cli import main

    ckpt = torch.load(evaluated_run / "best.pt", weights_only=True)
    ckpt["model"] = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
        for k, v in ckpt["model"].items()
    }
    torch.save(ckpt, tmp_path / "nan.pt")
    argv = ["eval", str(tmp_path / "nan.pt"), "--quiet", "--workers", "0"]
    assert main(argv) == 2
    err = one_error_line(capsys)
    assert "non-finite" in err and "tensor backbone." in err
    assert not list(tmp_path.glob("eval_*"))


def test_load_weights_is_strict_and_check_meta_counts_the_outputs():
    """The two checks on their own, on a model built here: a copy of its own weights loads, one
    tensor fewer or more does not (with `strict=False` both would pass silently)."""
    import gsag
    from gsag.engine.load_checks import check_meta, load_weights
    from gsag.errors import CheckpointError

    model = gsag.create_model("fcn", 3, backbone="test_resnet", aux=False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    target = gsag.create_model("fcn", 3, backbone="test_resnet", aux=False)
    load_weights(target, state, "w")
    assert all(torch.equal(target.state_dict()[k], v) for k, v in state.items())
    name = next(iter(state))
    for broken in ({k: v for k, v in state.items() if k != name}, {**state, "x.y": state[name]}):
        with pytest.raises(CheckpointError, match="does not fit its model"):
            load_weights(target, broken, "w")
    meta = {"classes": ["a", "b", "c"], "palette": [[0, 0, 0]] * 3, "mean": [0.5] * 3,
            "std": [0.2] * 3}  # fmt: skip
    check_meta(meta, 3, "m")
    with pytest.raises(CheckpointError, match="names 3 classes but the model has 4 outputs"):
        check_meta(meta, 4, "m")
    with pytest.raises(CheckpointError, match="ignore_index is True"):
        check_meta({**meta, "ignore_index": True}, 3, "m")
    with pytest.raises(CheckpointError, match="prediction_ids"):
        check_meta({**meta, "prediction_ids": [0, 1, 256]}, 3, "m")


@pytest.mark.parametrize("fault", ["nan", "integer"])
def test_resume_refuses_a_last_pt_with_broken_weights_before_training_on(
    fault, synth_root, tmp_path, capsys
):
    """The fourth load path, `--resume`: a `last.pt` whose tensors are NaN or integers (which
    `load_state_dict` would cast) is one error line naming the tensor; the run is not continued
    and its metrics.jsonl is as it was."""
    from gsag.cli import main
    from gsag.config import save_config
    from gsag.engine.train import train
    from tests.helpers.configs import tiny_config

    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.iters=4", "train.eval_interval=4")
    train(cfg, quiet=True, stop_after=2)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    change, pattern = WEIGHT_FAULTS[fault]
    tensor = _head_tensor(ckpt["model"]).replace(".", r"\.")
    change(ckpt["model"], ckpt["meta"])
    torch.save(ckpt, run / "last.pt")
    before = (run / "metrics.jsonl").read_bytes()
    config = tmp_path / "config.yaml"
    save_config(cfg, config)
    capsys.readouterr()
    assert main(["train", str(config), "--resume", "--quiet"]) == 2
    err = one_error_line(capsys)
    assert re.search(pattern.format(t=tensor), err) and "last.pt" in err, err
    assert (run / "metrics.jsonl").read_bytes() == before
