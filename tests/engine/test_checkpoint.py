"""Checkpoints: safe loading, RNG state round trip, atomic writes, models rebuilt from files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import gsag
from gsag.engine.checkpoint import (
    atomic_save,
    export_safetensors,
    load_checkpoint,
    load_model,
    rng_state,
    set_rng_state,
)
from gsag.engine.datasets import make_dataset
from gsag.engine.train import train
from tests.helpers.configs import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


@pytest.fixture(scope="module")
def run(synth_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ckpt_run")
    train(tiny_config(synth_root, run_dir, "train.iters=2"), quiet=True)
    return run_dir


def draws():
    return torch.rand(4), random.random(), np.random.rand(3)


def test_rng_state_round_trip():
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    state = rng_state()
    first = draws()
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    set_rng_state(state)
    second = draws()
    assert torch.equal(first[0], second[0]) and first[1] == second[1]
    assert np.array_equal(first[2], second[2])


def test_atomic_save_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "x.pt"
    atomic_save({"a": torch.zeros(1)}, path)
    atomic_save({"a": torch.ones(1)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(1))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_checkpoint_loads_with_weights_only_and_holds_what_predict_needs(run, synth_root):
    ckpt = torch.load(run / "best.pt", weights_only=True)  # no pickled objects inside
    resume_only = {"optimizer", "scheduler", "scaler", "rng"}
    assert {"model", "iteration", "best_miou", "config", "meta"} <= set(ckpt)
    assert not resume_only & set(ckpt)  # best.pt is for use; last.pt resumes
    assert resume_only <= set(torch.load(run / "last.pt", weights_only=True))
    ds = make_dataset(tiny_config(synth_root, run), "val", train=False)
    model, info = load_model(run / "best.pt")
    assert info["classes"] == ds.classes and info["num_classes"] == ds.num_classes
    assert info["palette"] == [list(c) for c in ds.palette]
    assert info["ignore_index"] == 255 and len(info["mean"]) == 3 and len(info["std"]) == 3
    assert info["config"]["model"]["name"] == "gsag_hybrid" and not model.training


def test_rebuilt_models_match_the_trained_weights(run, tmp_path):
    ckpt = load_checkpoint(run / "best.pt")
    m = ckpt["config"]["model"]
    reference = gsag.create_model(m["name"], ckpt["meta"]["num_classes"], backbone=m["backbone"],
                                  output_stride=m["output_stride"], **m["kwargs"])  # fmt: skip
    reference.load_state_dict(ckpt["model"])
    reference.eval()
    x = torch.randn(1, 3, 40, 48)
    export_safetensors(run / "best.pt", tmp_path / "w.safetensors")
    with torch.no_grad():
        expected = reference(x)["out"]
        for path in (run / "best.pt", tmp_path / "w.safetensors", run / "best.safetensors"):
            model, _ = load_model(path)
            torch.testing.assert_close(model(x)["out"], expected, rtol=0, atol=0)


class Foreign:
    pass


def test_foreign_files_are_refused_clearly(tmp_path):
    pickled = tmp_path / "evil.pt"
    torch.save({"obj": Foreign()}, pickled)
    with pytest.raises(ValueError, match="could not be read safely"):
        load_model(pickled)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(1)}, plain)
    with pytest.raises(ValueError, match="not a gsag checkpoint"):
        load_model(plain)
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(1)}, bare)
    with pytest.raises(ValueError, match="no gsag metadata"):
        load_model(bare)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_checkpoints_store_the_model_args_that_rebuild_the_model(run):
    ckpt = load_checkpoint(run / "best.pt")
    args = ckpt["meta"]["model_args"]
    model, meta = load_model(run / "best.pt")
    assert meta["model_args"] == args == model.model_args
    assert args["name"] == "gsag_hybrid" and args["num_classes"] == ckpt["meta"]["num_classes"]
    assert args["head_channels"] == 16 and args["levels"] == [2, 3, 4]


def test_checkpoints_written_before_model_args_still_load(run, tmp_path):
    """Such a checkpoint's model is rebuilt from its config's model section and num_classes."""
    ckpt = load_checkpoint(run / "best.pt")
    del ckpt["meta"]["model_args"]  # what the training loop wrote before it stored them
    old = tmp_path / "old.pt"
    atomic_save(ckpt, old)
    export_safetensors(old, tmp_path / "old.safetensors")
    reference, _ = load_model(run / "best.pt")
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        expected = reference(x)["out"]
        for path in (old, tmp_path / "old.safetensors"):
            model, meta = load_model(path)
            assert meta["model_args"] == reference.model_args
            torch.testing.assert_close(model(x)["out"], expected, rtol=0, atol=0)
