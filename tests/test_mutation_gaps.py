"""Tests for the bugs a mutation round (issue 37) put in and no test caught: a loader that
accepts any tensor names, per-rank RNG restore, the untrained export's normalisation, and the
value rules' edges pinned by hand (a table this test owns, not one derived from `RULES`)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from gsag.cli import main
from gsag.config import ConfigError, check_value
from gsag.engine.checkpoint import rng_state
from gsag.engine.distributed import DistInfo
from gsag.engine.run_state import restore_rng
from gsag.errors import CheckpointError
from gsag.trained.load import load_pretrained

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


def _edit_weights(folder, how: str) -> None:
    path = folder / "model.safetensors"
    state = load_file(str(path))
    name = sorted(state)[0]
    if how == "missing":
        del state[name]
    elif how == "extra":
        state["head.not_a_weight"] = torch.zeros(3)
    else:  # renamed
        state[f"{name}_renamed"] = state.pop(name)
    save_file(state, str(path))


@pytest.mark.parametrize("how", ["missing", "extra", "renamed"])
def test_a_folder_whose_tensors_do_not_match_the_model_is_refused(
    pretrained, tmp_path, capsys, how, synth_root
):
    folder = tmp_path / "edited"
    shutil.copytree(pretrained, folder)
    _edit_weights(folder, how)
    with pytest.raises(CheckpointError):
        load_pretrained(folder)
    capsys.readouterr()
    code = main(["predict", str(folder), "--input", str(synth_root / "JPEGImages"),
                 "--out", str(tmp_path / "pred"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert not (tmp_path / "pred").exists() or not any((tmp_path / "pred").rglob("*.png"))


def test_every_rank_restores_its_own_rng_state():
    torch.manual_seed(0)
    states = [rng_state()]
    torch.rand(5)  # rank 1 saved a later state than rank 0
    states.append(rng_state())
    expected = [torch.rand(3) for _ in range(2)]
    torch.manual_seed(123)
    restore_rng(states, DistInfo(rank=1, world_size=2), show=False)
    restored = [torch.rand(3) for _ in range(2)]
    for a, b in zip(expected, restored, strict=True):
        assert torch.equal(a, b)
    restore_rng(states, DistInfo(rank=0, world_size=2), show=False)
    assert not torch.equal(torch.rand(3), expected[0])  # rank 0 draws rank 0's numbers


def test_an_untrained_export_carries_its_backbones_mean_and_std(tmp_path):
    from timm.models import get_pretrained_cfg

    from gsag.trained.export import read_onnx_metadata

    pytest.importorskip("onnx")
    cfg = get_pretrained_cfg("resnet18.tv_in1k")
    mean, std = list(cfg.mean), list(cfg.std)
    assert mean != std  # else a swap could not show
    out = tmp_path / "m.onnx"
    argv = ["export", "--model", "fcn", "--backbone", "resnet18", "--num-classes", "3",
            "--out", str(out), "--height", "64", "--width", "64", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    meta = read_onnx_metadata(out)
    assert json.loads(meta["mean"]) == pytest.approx(mean)
    assert json.loads(meta["std"]) == pytest.approx(std)


#: (key, values at the edge that pass, values just past it that fail), written by hand from the
#: documented ranges (docs/training.md, "What each key accepts").
EDGES = [
    ("data.crop_size", [1, 16384], [0, 16385]),
    ("data.cat_max_ratio", [1e-9, 1.0], [0.0, 1.000001]),
    ("data.hflip", [0.0, 1.0], [-0.001, 1.001]),
    ("data.scale_range", [[0.001, 16.0]], [[0.0, 1.0], [0.5, 16.01], [2.0, 1.0]]),
    ("data.mean", [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], [[1.01, 0.5, 0.5], [-0.01, 0.5, 0.5]]),
    ("data.std", [[1e-6, 1e-6, 1e-6], [1.0, 1.0, 1.0]], [[0.0, 0.5, 0.5], [1.01, 0.5, 0.5]]),
    ("loss.thresh", [1e-9, 1.0], [0.0, 1.01]),
    ("loss.min_kept", [1], [0]),
    ("loss.aux_weight", [0.0], [-0.01]),
    ("optim.lr", [0.0], [-1e-9]),
    ("optim.momentum", [0.0, 0.999], [1.0, -0.01]),
    ("optim.weight_decay", [0.0], [-1e-9]),
    ("optim.head_lr_mult", [1e-9], [0.0]),
    ("optim.grad_clip", [0.0], [-0.1]),
    ("schedule.warmup_ratio", [0.0, 1.0], [-0.01, 1.01]),
    ("schedule.warmup_iters", [0], [-1]),
    ("train.iters", [1], [0]),
    ("train.batch_size", [1], [0]),
    ("train.num_workers", [0, 256], [-1, 257]),
    ("train.num_threads", [0, 1024], [-1, 1025]),
    ("train.seed", [0], [-1]),
    ("eval.scales", [[0.001, 16.0]], [[0.0], [16.5], []]),
]


@pytest.mark.parametrize(("key", "good", "bad"), EDGES, ids=[e[0] for e in EDGES])
def test_value_rule_edges_pinned_by_hand(key, good, bad):
    for value in good:
        check_value(key, value)
    for value in bad:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            check_value(key, value)
