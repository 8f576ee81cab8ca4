"""The training loop: run directory contents, exact resume, non-finite losses, global state."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

import gsag
from gsag.config import load_config
from gsag.engine import train as train_mod
from gsag.engine.checkpoint import load_checkpoint
from gsag.engine.sampler import StreamSampler
from gsag.engine.schedule import poly_lr
from gsag.engine.timing import TIMING_KEYS
from gsag.engine.train import TrainingDiverged, train
from tests.helpers.configs import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test


def records(run_dir, kind):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def test_run_dir_holds_everything(synth_root, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_config(synth_root, run), quiet=True)
    assert {"config.yaml", "metrics.jsonl", "last.pt", "best.pt"} <= {p.name for p in run.iterdir()}
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    assert load_config(run / "config.yaml") == tiny_config(synth_root, run)
    val = records(run, "val")
    assert [r["iteration"] for r in val] == [2, 4]
    assert result["best_miou"] == max(r["mIoU"] for r in val)
    assert result["metrics"]["mIoU"] == val[-1]["mIoU"]
    assert [r["iteration"] for r in records(run, "train")] == [1, 2, 3, 4]
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert last["iteration"] == 4 and best["best_miou"] == pytest.approx(result["best_miou"])
    assert best["meta"]["classes"][0] == "background" and best["meta"]["ignore_index"] == 255
    assert (run / "best.safetensors").is_file()


def test_resume_is_bit_identical(synth_root, tmp_path):
    straight = tmp_path / "straight"
    split = tmp_path / "split"
    train(tiny_config(synth_root, straight), quiet=True)
    killed = train(tiny_config(synth_root, split), quiet=True, stop_after=2)
    assert killed["iteration"] == 2 and load_checkpoint(split / "last.pt")["iteration"] == 2
    train(tiny_config(synth_root, split), quiet=True, resume=True)
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for sa, sb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert untimed(records(straight, "train")) == untimed(records(split, "train"))
    assert untimed(records(straight, "val")) == untimed(records(split, "val"))


def untimed(rows):
    """Records without their timing fields, which differ between otherwise identical runs."""
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def test_train_log_says_where_the_time_goes(synth_root, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_config(synth_root, run, "train.log_interval=2"), quiet=True)
    rows = records(run, "train")
    assert [r["iteration"] for r in rows] == [2, 4]
    for r in rows:
        assert r["sec_per_iter"] > 0 and 0 <= r["data_share"] <= 1
        assert r["images_per_s"] == pytest.approx(2 / r["sec_per_iter"])  # batch 2
        assert "peak_mem_gib" not in r  # CUDA only
    # a run's iterations take less time than the whole run
    assert 2 * sum(r["sec_per_iter"] for r in rows) < result["seconds"]
    assert result["compile_seconds"] == 0.0


def test_non_finite_loss_skips_the_step_and_counts_it(synth_root, tmp_path, monkeypatch):
    make = train_mod.build_train_model
    poisoned_calls = {3}  # the forward pass of iteration 3 (training calls only)

    def build(cfg, num_classes):
        model = make(cfg, num_classes)
        calls = {"n": 0}

        def hook(module, args, out):
            if not module.training:
                return out
            calls["n"] += 1
            if calls["n"] in poisoned_calls:
                return {k: v * math.nan for k, v in out.items()}
            return out

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(train_mod, "build_train_model", build)
    run = tmp_path / "run"
    result = train(tiny_config(synth_root, run, "train.save_interval=1"), quiet=True)
    assert result["bad_steps"] == 1 and result["iteration"] == 4
    steps = {r["iteration"]: r for r in records(run, "train")}
    assert steps[2]["bad_steps"] == 0 and steps[3]["bad_steps"] == 1


def test_consecutive_non_finite_losses_stop_with_checkpoint_intact(
    synth_root, tmp_path, monkeypatch
):
    make = train_mod.build_train_model

    def build(cfg, num_classes):
        model = make(cfg, num_classes)
        calls = {"n": 0}

        def hook(module, args, out):
            if module.training:
                calls["n"] += 1
                if calls["n"] > 2:  # every step after iteration 2 is NaN
                    return {k: v * math.nan for k, v in out.items()}
            return out

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(train_mod, "build_train_model", build)
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.iters=10", "train.max_bad_steps=3")
    with pytest.raises(TrainingDiverged, match="NaN/inf for 3 iterations in a row") as err:
        train(cfg, quiet=True)
    assert str(run / "last.pt") in str(err.value)
    last = load_checkpoint(run / "last.pt")
    assert last["iteration"] == 2  # the save at iteration 2; nothing written after
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_train_leaves_global_state_alone(synth_root, tmp_path):
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    random.seed(123)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(123)
    random.seed(123)
    train(
        tiny_config(synth_root, tmp_path / "run", "train.iters=1", "train.num_threads=1"),
        quiet=True,
    )
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_stream_is_the_same_for_any_process_count_and_accumulation():
    def stream(world, accum, start=0):
        micro = 8 // (world * accum)
        per_rank = [
            list(StreamSampler(10, 8, micro, accum, r, world, seed=0, start=start, iters=5))
            for r in range(world)
        ]
        samples = set()
        for chunk in per_rank:
            samples |= set(chunk)
        return samples

    one = stream(1, 1)
    assert one == stream(2, 1) == stream(2, 2) == stream(1, 4)
    assert len(one) == 40 and {pos for _, pos in one} == set(range(40))
    assert stream(1, 1, start=2) == {s for s in one if s[1] >= 16}  # a resumed stream
    epoch0 = sorted(i for i, pos in one if pos < 10)
    assert epoch0 == list(range(10))  # every image once per epoch


@pytest.mark.parametrize("it", [0, 1, 50, 99, 100, 150])
def test_poly_lr_formula(it):
    base, total, min_lr, warm = 0.01, 100, 1e-4, 10
    expected = (base - min_lr) * (1 - min(it, total) / total) ** 0.9 + min_lr
    if it < warm:
        expected *= 1e-6 + (1 - 1e-6) * it / warm
    assert poly_lr(it, base, total, 0.9, min_lr, warm, 1e-6) == pytest.approx(expected)
    assert poly_lr(total, base, total, 0.9, min_lr) == pytest.approx(min_lr)


def test_head_lr_mult(synth_root, tmp_path):
    cfg = tiny_config(synth_root, tmp_path / "run", "optim.head_lr_mult=10")
    model = train_mod.build_train_model(cfg, 8)
    opt = train_mod.build_optimizer(cfg, model)
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])
    assert all(id(p) in backbone_ids for p in opt.param_groups[0]["params"])
    assert not any(id(p) in backbone_ids for p in opt.param_groups[1]["params"])


@pytest.mark.parametrize(
    "options",
    [
        ("train.amp=bf16", "train.channels_last=true"),
        ("train.accum_steps=2", "loss.type=ce", "optim.name=adamw", "optim.grad_clip=1.0"),
    ],
    ids=["bf16-channels-last", "accumulation-adamw-clip"],
)
def test_training_options_take_finite_steps(synth_root, tmp_path, options):
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.iters=2", "train.eval_interval=2", *options)
    result = train(cfg, quiet=True)
    assert result["bad_steps"] == 0
    losses = [r["loss"] for r in records(run, "train")]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    after = load_checkpoint(run / "last.pt")["model"]
    assert changed_weights(initial_weights(cfg), after)


def initial_weights(cfg):
    torch.manual_seed(cfg.train.seed)  # train() seeds like this before building the model
    return train_mod.build_train_model(cfg, 8).state_dict()


def changed_weights(before, after):
    return [k for k in after if k.endswith("weight") and not torch.equal(before[k], after[k])]


def test_zero_lr_keeps_the_seeded_initial_weights(synth_root, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.iters=1", "optim.lr=0", "schedule.min_lr=0")
    train(cfg, quiet=True)
    assert changed_weights(initial_weights(cfg), load_checkpoint(run / "last.pt")["model"]) == []


def test_fp16_needs_cuda(synth_root, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is allowed")
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        train(tiny_config(synth_root, tmp_path / "run", "train.amp=fp16"), quiet=True)


@pytest.mark.slow
def test_compiled_training_matches_eager_loss(synth_root, tmp_path):
    # The process has compiled Segmentor.forward at another size before (as after an earlier
    # run, bench row or test): dynamo's automatic dynamic shapes would make the training graph
    # dynamic, which inductor fails to lower ("cannot determine truth value of Relational").
    # The traced "eager" backend is enough to record the other size.
    other = torch.compile(gsag.create_model("fcn", 2, backbone="test_resnet"), backend="eager")
    other(torch.randn(1, 3, 40, 48))
    # no dropout anywhere (compiled code draws its own random numbers) and plain CE (OHEM's
    # pixel selection would magnify rounding differences)
    opts = ("train.iters=1", "model.kwargs.dropout=0", "model.aux=false", "loss.type=ce")
    eager = train(tiny_config(synth_root, tmp_path / "eager", *opts), quiet=True)
    compiled = train(
        tiny_config(synth_root, tmp_path / "compiled", *opts, "train.compile=true"), quiet=True
    )
    a = records(tmp_path / "eager", "train")[0]["loss"]
    b = records(tmp_path / "compiled", "train")[0]["loss"]
    assert b == pytest.approx(a, rel=1e-4)
    assert compiled["metrics"]["mIoU"] == pytest.approx(eager["metrics"]["mIoU"], abs=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_channels_last_training(synth_root, tmp_path):
    run = tmp_path / "run"
    opts = ("train.iters=3", "train.amp=fp16", "train.channels_last=true", "train.eval_interval=3")
    result = train(tiny_config(synth_root, run, *opts), quiet=True, device="cuda")
    assert all(math.isfinite(r["loss"]) for r in records(run, "train"))
    assert result["iteration"] == 3 and load_checkpoint(run / "last.pt")["scaler"]["scale"] > 0


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("model.name=gsag_hybird", "model.name is 'gsag_hybird'; did you mean gsag_hybrid?"),
        ("model.backbone=resnet5", "model.backbone is 'resnet5'"),
        ("model.kwargs.heads=2", "model.kwargs.heads is not an option of gsag_hybrid"),
        ("model.pretrained=nowhere.pth", "'nowhere.pth', which is not a file"),
    ],
)
def test_bad_model_config_is_named_before_any_work(synth_root, tmp_path, override, fragment):
    from gsag.config import ConfigError

    with pytest.raises(ConfigError) as err:
        train(tiny_config(synth_root, tmp_path / "run", override), quiet=True)
    assert fragment in str(err.value)
    assert not (tmp_path / "run").exists()


def test_missing_data_root_says_how_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data\.synthetic=true"):
        train(tiny_config(tmp_path / "nothing", tmp_path / "run"), quiet=True)


def test_cli_trains_and_reports_config_errors(synth_root, tmp_path, capsys):
    from gsag.cli import main
    from gsag.config import save_config

    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(synth_root, tmp_path / "unused"), config)
    run = tmp_path / "cli_run"
    argv = ["train", str(config), "--set", "train.iters=1", "--run-dir", str(run), "--quiet"]
    assert main(argv) == 0
    assert load_config(run / "config.yaml").train.iters == 1 and (run / "best.pt").is_file()
    assert main(["train", str(config), "--set", "train.itres=1"]) == 2
    assert "did you mean train.iters?" in capsys.readouterr().err


def _strict_json(line):
    """json.loads that refuses NaN and Infinity, which are not JSON."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_metrics_jsonl_stays_json_with_infinite_values(tmp_path):
    from gsag.engine import distributed
    from gsag.engine.run_log import RunLog

    log = RunLog(tmp_path, 0, distributed.setup("cpu"))
    log.train(1, {"loss": math.inf, "loss_main": -math.inf}, math.inf, 0, {"x": math.nan})
    log.close()
    (line,) = (tmp_path / "metrics.jsonl").read_text().splitlines()
    record = _strict_json(line)
    assert record["loss"] is None and record["lr"] is None and record["x"] is None


def test_weights_that_went_non_finite_stop_the_run_before_any_save(
    synth_root, tmp_path, monkeypatch
):
    """A step that leaves inf in the weights (what a huge learning rate does) stops the run at
    that iteration: no evaluation, best.pt and last.pt keep the last finite weights."""
    make = train_mod.build_optimizer

    def build(cfg, model):
        optimizer = make(cfg, model)
        real_step = optimizer.step
        steps = {"n": 0}

        def step(*args, **kwargs):
            out = real_step(*args, **kwargs)
            steps["n"] += 1
            if steps["n"] == 3:
                with torch.no_grad():
                    next(model.parameters()).mul_(math.inf)
            return out

        optimizer.step = step
        return optimizer

    monkeypatch.setattr(train_mod, "build_optimizer", build)
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.iters=6", "train.eval_interval=1",
                      "train.save_interval=1", "train.max_bad_steps=5")  # fmt: skip
    with pytest.raises(TrainingDiverged, match="weights became NaN/inf at iteration 3") as err:
        train(cfg, quiet=True)
    assert str(run / "last.pt") in str(err.value)
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(run / name)
        assert ckpt["iteration"] <= 2, name
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert max(r["iteration"] for r in records(run, "val")) == 2
    for line in (run / "metrics.jsonl").read_text().splitlines():
        _strict_json(line)


def test_all_ignore_validation_keeps_no_best_and_says_so(synth_root, tmp_path, capsys, monkeypatch):
    """Validation masks that hold nothing but ignore_index: mIoU is undefined, so no best.pt;
    the summary names no best mIoU and no missing file, but last.pt."""
    import shutil

    import numpy as np

    from gsag.cli import main
    from gsag.config import save_config
    from gsag.data import read_mask, save_mask
    from gsag.data.synth import SYNTH_PALETTE

    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    for mask in (data / "SegmentationClass").glob("val_*.png"):
        save_mask(mask, np.full_like(read_mask(mask), 255), SYNTH_PALETTE)
    run = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(data, run), config)
    monkeypatch.setenv("COLUMNS", "500")  # no wrapped or shortened paths in rich's table
    assert main(["train", str(config)]) == 0
    captured = capsys.readouterr()
    assert not (run / "best.pt").exists()
    assert "-100.00" not in captured.out and str(run / "best.pt") not in captured.out
    assert f"none (no labelled validation pixels); use {run / 'last.pt'}" in captured.out
    assert "validation split 'val' has no labelled pixels" in " ".join(captured.err.split())
    result = train(tiny_config(data, tmp_path / "run2"), quiet=True)
    assert math.isnan(result["best_miou"]) and result["checkpoint"] is None


@pytest.mark.parametrize("fused", [True, False], ids=["get_total_norm", "torch<2.6"])
def test_all_finite_agrees_with_an_element_check(fused, monkeypatch):
    """Both paths (torch >= 2.6's fused norm, the per-tensor check of older torch) find one
    NaN or inf among several tensors of different dtypes, and pass all-finite ones."""
    if not fused:
        monkeypatch.delattr(torch.nn.utils, "get_total_norm", raising=False)
    elif not hasattr(torch.nn.utils, "get_total_norm"):
        pytest.skip(f"torch {torch.__version__} has no torch.nn.utils.get_total_norm (2.6+)")
    for bad in (None, math.nan, math.inf, -math.inf):
        tensors = [torch.randn(3, 4), torch.randn(5, dtype=torch.float64), torch.zeros(2, 2)]
        if bad is not None:
            tensors[1][2] = bad
        expected = all(bool(torch.isfinite(t).all()) for t in tensors)
        assert train_mod._all_finite(tensors) is expected
        assert expected is (bad is None)


def test_an_enormous_learning_rate_stops_the_run(synth_root, tmp_path):
    """lr 1e30 overflows the weights in a step or two while the losses are still finite; the
    run stops instead of finishing with NaN weights and a NaN mIoU."""
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "optim.lr=1e30", "train.iters=6")
    with pytest.raises(TrainingDiverged, match="weights became NaN/inf at iteration"):
        train(cfg, quiet=True)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        _strict_json(line)
