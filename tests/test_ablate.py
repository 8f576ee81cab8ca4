"""gsag ablate: summary statistics, per-model kwargs, the grid run, skipping and resuming."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import gsag
from gsag import ablate
from gsag.engine.datasets import input_norm
from gsag.engine.run_log import read_metrics_log
from tests.helpers.configs import TINY_CLI_SETS

TINY = TINY_CLI_SETS


def _fake(model, seed, miou, iou):
    return {"model": model, "backbone": "b", "seed": seed, "mIoU": miou, "aAcc": 0.5,
            "mAcc": 0.4, "best_mIoU": miou, "IoU": iou, "train_seconds": 1.0}  # fmt: skip


def test_summary_is_mean_and_sample_std_over_seeds():
    runs = [
        _fake("a", 0, 0.30, [0.1, 0.5]),
        _fake("a", 1, 0.40, [0.3, float("nan")]),
        _fake("a", 2, 0.35, [0.2, 0.7]),
        _fake("c", 0, 0.20, [0.0, 0.4]),
    ]
    summary = {g["model"]: g for g in ablate.summarise(runs)}
    a = summary["a"]
    assert a["seeds"] == 3 and a["seed_list"] == [0, 1, 2]
    assert a["miou_mean"] == pytest.approx(np.mean([0.30, 0.40, 0.35]))
    assert a["miou_std"] == pytest.approx(np.std([0.30, 0.40, 0.35], ddof=1))
    assert a["iou_mean"] == pytest.approx([0.2, np.nanmean([0.5, np.nan, 0.7])])
    assert summary["c"]["miou_std"] == 0.0
    md = ablate.results_markdown(ablate.summarise(runs), ["bg", "fg"])
    assert "| a | b | 3 | 35.0 ± 5.0 |" in md


def test_model_kwargs_keep_only_what_each_head_accepts():
    import gsag

    shared = {"head_channels": 32, "num_heads": 2, "key_channels": 16}
    for name in gsag.list_models():
        kept, dropped = ablate.model_kwargs_for(name, shared)
        assert set(kept) | set(dropped) == set(shared)
        gsag.create_model(name, 3, backbone="test_resnet", **kept)  # accepted
        for key in dropped:
            with pytest.raises(TypeError):
                gsag.create_model(name, 3, backbone="test_resnet", **{key: shared[key]})
    assert ablate.model_kwargs_for("deeplabv3", shared)[1] == ["key_channels", "num_heads"]


def test_grid_orders_seeds_innermost():
    combos = ablate.grid(["m1", "m2"], ["b"], [0, 1])
    assert [c.name for c in combos] == ["m1__b__s0", "m1__b__s1", "m2__b__s0", "m2__b__s1"]


def test_ablate_cli_trains_reports_skips_and_resumes(tmp_path, synth_root, monkeypatch):
    from gsag.cli import main

    out = tmp_path / "abl"
    args = ["ablate", "--config", "configs/demo.yaml", "--models", "gsag_hybrid", "fcn",
            "--seeds", "0", "1", "--out", str(out), "--set", f"data.root={synth_root}",
            "--set", "data.synthetic=false", *TINY]  # fmt: skip
    assert main(args) == 0
    data = json.loads((out / "results.json").read_text())
    assert len(data["runs"]) == 4
    assert data["classes"][0] == "background"
    for run in data["runs"]:
        # the reported mIoU is the run's final evaluation as logged by the engine
        _, evals = read_metrics_log(f"{run['run_dir']}/metrics.jsonl")
        assert run["mIoU"] == pytest.approx(evals[-1]["mIoU"])
    losses = [read_metrics_log(f"{r['run_dir']}/metrics.jsonl")[0][0]["loss"] for r in data["runs"]]
    assert losses[0] != losses[1]  # the seed changes the run
    hybrid = next(g for g in data["summary"] if g["model"] == "gsag_hybrid")
    mious = [r["mIoU"] for r in data["runs"] if r["model"] == "gsag_hybrid"]
    assert hybrid["miou_mean"] == pytest.approx(np.mean(mious))
    assert [r["other"] for r in data["comparisons"]] == ["fcn"]
    env = data["runs"][0]["environment"]  # where it ran: another CPU's kernels round otherwise
    assert env["device"] == "cpu" and env["torch"] == torch.__version__
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    for name in ("miou.png", "curves.png", "per_class_iou.png", "differences.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"

    # a rerun trains nothing; removing one result retrains only that combination
    import gsag.engine.train as engine_train

    calls = []
    real_train = engine_train.train

    def counting_train(cfg, **kw):
        calls.append(cfg.output.run_dir)
        return real_train(cfg, **kw)

    monkeypatch.setattr(engine_train, "train", counting_train)
    assert main(args) == 0
    assert calls == []
    [fcn_s1] = (out / "runs").glob("fcn__test_resnet__s1__*")
    (fcn_s1 / "result.json").unlink()
    assert main(args) == 0
    assert set(calls) == {str(fcn_s1)}  # resumed at its end, then trained anew (no metrics)
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 4

    # a changed config trains into a new folder; the old run stays as it was
    calls.clear()
    changed = [*args[:4], "fcn", "--seeds", "1", *args[9:], "--set", "optim.lr=0.02"]
    assert main(changed) == 0
    assert len(calls) == 1 and calls[0] != str(fcn_s1)
    assert calls[0].startswith(str(fcn_s1)[: -len("12345678")])
    assert (fcn_s1 / "result.json").is_file()


def test_fingerprint_ignores_only_settings_that_cannot_change_results():
    from gsag.config import load_config

    base = load_config(None, ["model.backbone=test_resnet"]).to_dict()
    same = load_config(None, ["model.backbone=test_resnet", "output.run_dir=elsewhere",
                              "train.num_threads=3", "train.num_workers=0"]).to_dict()  # fmt: skip
    other = load_config(None, ["model.backbone=test_resnet", "optim.lr=0.02"]).to_dict()
    assert ablate.fingerprint(base) == ablate.fingerprint(same)
    assert ablate.fingerprint(base) != ablate.fingerprint(other)
    assert len(ablate.fingerprint(base)) == 8


def test_eval_batch_size_keeps_the_fingerprints_of_runs_recorded_before_it():
    from gsag.config import load_config

    cfg = load_config(None, ["model.backbone=test_resnet", "eval.batch_size=8"]).to_dict()
    before = {**cfg, "eval": {k: v for k, v in cfg["eval"].items() if k != "batch_size"}}
    assert ablate.fingerprint(cfg) == ablate.fingerprint(before)  # a config without the key


def test_variants_are_named_runs_of_the_same_model():
    combos = ablate.grid(["gsag_hybrid"], ["b"], [0], ["base", "no_gate", "ce"])
    names = [c.name for c in combos]
    assert names == ["gsag_hybrid__b__s0", "gsag_hybrid-no_gate__b__s0", "gsag_hybrid-ce__b__s0"]
    gate = ablate.combo_overrides(combos[1])
    assert "model.kwargs.gate=false" in gate and "model.name=gsag_hybrid" in gate
    with pytest.raises(ValueError, match="unknown ablation variant"):
        ablate.grid(["gsag_hybrid"], ["b"], [0], ["no_such"])


def test_every_named_variant_builds_its_model():
    from gsag.config import load_config

    for name, overrides in ablate.VARIANTS.items():
        cfg = load_config(None, [*overrides, "model.kwargs={head_channels: 16, key_channels: 8}"])
        kept, dropped = ablate.model_kwargs_for("gsag_hybrid", cfg.model.kwargs)
        assert not dropped, name
        gsag.create_model("gsag_hybrid", 3, backbone="test_resnet", **kept)
    assert load_config(None, list(ablate.VARIANTS["ce"])).loss.type == "ce"


def test_variant_on_a_model_without_the_switch_is_refused(tmp_path):
    combo = ablate.Combo("fcn", "test_resnet", 0, "no_gate")
    with pytest.raises(ValueError, match="fcn does not take"):
        ablate.run_combo(None, combo, tmp_path)


def test_comparisons_use_the_welch_interval():
    from gsag.stats import welch_interval

    runs = [_fake("gsag_hybrid", s, m, [m]) for s, m in enumerate([0.54, 0.55, 0.53])]
    runs += [_fake("gsag_basic", s, m, [m]) for s, m in enumerate([0.44, 0.43, 0.45])]
    runs += [{**_fake("gsag_hybrid", 0, 0.50, [0.5]), "label": "gsag_hybrid-no_gate"}]
    rows = {r["other"]: r for r in ablate.comparisons(ablate.summarise(runs))}
    ref = welch_interval([0.54, 0.55, 0.53], [0.44, 0.43, 0.45])
    assert rows["gsag_basic"]["diff"] == pytest.approx(0.10)
    assert (rows["gsag_basic"]["low"], rows["gsag_basic"]["high"]) == (ref.low, ref.high)
    assert rows["gsag_basic"]["decided"] and not rows["gsag_hybrid-no_gate"]["decided"]
    md = ablate.comparisons_markdown(list(rows.values()))
    assert "| gsag_hybrid | gsag_basic | heads | b | 3 / 3 | +10.0 |" in md
    assert "needs ≥ 2 seeds each" in md


def test_a_group_whose_runs_all_diverged_does_not_break_the_report(tmp_path):
    nan = float("nan")
    runs = [_fake("gsag_hybrid", s, m, [m]) for s, m in enumerate([0.54, 0.55])]
    runs += [_fake("fcn", s, nan, [nan]) for s in (0, 1)]  # both seeds diverged
    runs += [_fake("danet", s, m, [m]) for s, m in enumerate([0.50, nan])]  # one of two
    for r in runs:
        r["run_dir"] = str(tmp_path / f"{r['model']}_{r['seed']}")  # no metrics.jsonl: no curve
    rows = {r["other"]: r for r in ablate.comparisons(ablate.summarise(runs))}
    assert np.isnan(rows["fcn"]["diff"]) and not rows["fcn"]["decided"] and rows["fcn"]["n_b"] == 0
    assert rows["danet"]["diff"] == pytest.approx(0.045) and rows["danet"]["n_b"] == 1
    paths = ablate.write_report(runs, tmp_path / "report", ["c"])
    md = paths["markdown"].read_text()
    assert "| fcn | heads | b | 2 / 0 | – | no finite mIoU on one side |" in md
    assert json.loads(paths["json"].read_text())["comparisons"][0]["diff"] is None


def test_cli_variant_run_and_report_only(tmp_path, synth_root):
    from gsag.cli import main

    out = tmp_path / "abl"
    args = ["ablate", "--config", "configs/demo.yaml", "--models", "gsag_hybrid", "--seeds", "0",
            "--out", str(out), "--set", f"data.root={synth_root}", "--set",
            "data.synthetic=false", *TINY]  # fmt: skip
    assert main([*args, "--report-only"]) == 2  # nothing finished yet: an error, no training
    assert main([*args, "--variants", "no_gate"]) == 0
    run = json.loads(
        next((out / "runs").glob("gsag_hybrid-no_gate__test_resnet__s0__*/result.json")).read_text()
    )
    assert run["model_kwargs"]["gate"] is False and run["label"] == "gsag_hybrid-no_gate"
    # base was never trained: --report-only reports the finished variant and trains nothing
    assert main([*args, "--variants", "base", "no_gate", "--report-only"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert [g["model"] for g in data["summary"]] == ["gsag_hybrid-no_gate"]
    # the header names what the report covers, not what was asked
    assert data["meta"]["variants"] == "no_gate" and data["meta"]["seeds"] == "0"
    assert not list((out / "runs").glob("gsag_hybrid__test_resnet__s0__*"))
    assert "paired" not in data
    assert main([*args, "--variants", "no_gate", "--report-only", "--paired"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["paired"] == [] and data["meta"]["analysis"].startswith("paired by seed")
    assert main([*args, "--variants", "no_such"]) == 2


def test_a_combination_killed_before_its_first_save_is_redone(tmp_path, synth_root, monkeypatch):
    """Its folder holds a log but no last.pt: the engine's resume refuses such a folder, so the
    ablation moves it aside and trains the combination anew."""
    sets = [s for s in TINY if s != "--set"]
    overrides = [f"data.root={synth_root}", "data.synthetic=false", *sets]
    combo = ablate.Combo("fcn", "test_resnet", 0)
    cfg, _ = ablate.resolve_combo("configs/demo.yaml", combo, tmp_path, overrides)
    run = tmp_path / "runs" / cfg.output.run_dir.split("/")[-1]
    assert str(run) == cfg.output.run_dir
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("train: {}\n")  # written first by every run
    (run / "metrics.jsonl").write_text('{"type": "train", "iteration": 1, "loss": 1.0}\n')
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    calls = []

    def load():  # the 1-minute load average is 3.0 when training starts, 5.0 from then on
        calls.append(1)
        return (3.0 if len(calls) == 1 else 5.0, 0.0, 0.0)

    monkeypatch.setattr(os, "getloadavg", load)
    try:  # the run trains at its config's thread count, and its result says so
        result = ablate.run_combo(
            "configs/demo.yaml", combo, tmp_path, [*overrides, "train.num_threads=1"], quiet=True
        )
    finally:
        torch.set_num_threads(threads)
    assert result["environment"]["threads"] == 1
    env = result["environment"]
    assert (env["load_average_1min_at_start"], env["load_average_1min_at_end"]) == (3.0, 5.0)
    assert (run / "result.json").is_file() and result["mIoU"] == result["mIoU"]
    (aside,) = run.parent.glob(f"{run.name}.old-*")
    assert (aside / "metrics.jsonl").read_text().startswith('{"type": "train", "iteration": 1,')


def test_changed_data_at_the_same_path_is_not_reused(tmp_path, synth_root):
    """The fingerprint holds the dataset's identity: the same config over other data trains
    anew; unchanged data finds the finished run."""
    import shutil

    from gsag.config import load_config

    data = shutil.copytree(synth_root, tmp_path / "data")
    sets = [f"data.root={data}", "data.synthetic=false"]
    combo = ablate.Combo("fcn", "test_resnet", 0)
    first, _ = ablate.resolve_combo(None, combo, tmp_path / "abl", sets)
    identity = ablate.data_identity(first)
    assert identity == ablate.data_identity(load_config(None, sets))  # stable
    run = (
        tmp_path / "abl" / "runs" / f"{combo.name}__{ablate.fingerprint(first.to_dict(), identity)}"
    )
    assert first.output.run_dir == str(run)
    run.mkdir(parents=True)
    (run / ablate.RESULT_FILE).write_text(json.dumps({"data": identity}))
    assert ablate.resolve_combo(None, combo, tmp_path / "abl", sets)[0].output.run_dir == str(run)

    lists = data / "ImageSets" / "Segmentation"
    (lists / "val.txt").write_text("".join(f"val_{i:05d}\n" for i in range(3)))  # one fewer
    changed, _ = ablate.resolve_combo(None, combo, tmp_path / "abl", sets)
    assert changed.output.run_dir != str(run)
    (lists / "val.txt").write_text("".join(f"val_{i:05d}\n" for i in range(4)))
    text = (data / "classes.yaml").read_text()
    (data / "classes.yaml").write_text(text.replace("seed: 0", "seed: 7"))  # regenerated
    assert ablate.resolve_combo(None, combo, tmp_path / "abl", sets)[0].output.run_dir != str(run)


def test_runs_recorded_before_the_data_counted_are_still_found(tmp_path, synth_root):
    sets = [f"data.root={synth_root}", "data.synthetic=false"]
    combo = ablate.Combo("fcn", "test_resnet", 1)
    cfg, _ = ablate.resolve_combo(None, combo, tmp_path, sets)
    old = tmp_path / "runs" / f"{combo.name}__{ablate.fingerprint(cfg.to_dict())}"
    assert cfg.output.run_dir != str(old)
    old.mkdir(parents=True)
    (old / ablate.RESULT_FILE).write_text(json.dumps({"mIoU": 0.5}))  # no "data" entry
    assert ablate.resolve_combo(None, combo, tmp_path, sets)[0].output.run_dir == str(old)


def test_finished_runs_are_found_by_content_when_the_name_no_longer_matches(tmp_path, synth_root):
    """A run recorded before a config key existed (so every hash changed since), or with the
    backbone's normalisation spelled out instead of `[]`, is still found; a run with another
    recipe or another dataset is not."""
    import yaml

    sets = [f"data.root={synth_root}", "data.synthetic=false"]
    combo = ablate.Combo("fcn", "test_resnet", 2)
    cfg, _ = ablate.resolve_combo(None, combo, tmp_path, sets)
    identity = ablate.data_identity(cfg)

    def record(folder: str, edit, data=identity) -> Path:
        run = tmp_path / "runs" / f"{combo.name}__{folder}"
        run.mkdir(parents=True)
        doc = cfg.to_dict()
        edit(doc)
        (run / "config.yaml").write_text(yaml.safe_dump(doc))
        (run / ablate.RESULT_FILE).write_text(json.dumps({"mIoU": 0.5, "data": data}))
        return run

    def older(doc):  # a key added after this run was recorded, and the mean/std spelled out
        del doc["eval"]["max_images"]
        doc["data"]["mean"], doc["data"]["std"] = input_norm(cfg)

    other_lr = record("aaaa0001", lambda d: (older(d), d["optim"].update(lr=0.5)))
    other_data = record("aaaa0002", older, data="0123456789abcdef")
    assert ablate.resolve_combo(None, combo, tmp_path, sets)[0].output.run_dir == cfg.output.run_dir
    same = record("aaaa0003", older)
    found = ablate.resolve_combo(None, combo, tmp_path, sets)[0].output.run_dir
    assert found == str(same) and found not in (str(other_lr), str(other_data))


def test_the_val_grids_first_seed_0_runs_are_found_on_the_same_data_elsewhere(tmp_path,
                                                                              monkeypatch):  # fmt: skip
    """The committed records of hybrid seed 0 (and basic, incremental) name `runs/i10/data` and
    `train.amp: none`; the docs' report command names `runs/ctx_v2` and today's `auto`. Found
    when the dataset at the path the record names is the one of the command (same identity),
    not when that path holds nothing or other data."""
    import shutil

    from gsag.data.synth import generate

    root = Path(__file__).resolve().parents[1]
    record = root / "docs/results/ablation_v2/runs/gsag_hybrid__resnet18__s0__e6520b16"
    out = tmp_path / "ablate_v2"
    shutil.copytree(record, out / "runs" / record.name)
    monkeypatch.chdir(tmp_path)
    sets = ["data.root=runs/ctx_v2", "data.synthetic=false", "train.iters=300",
            "train.eval_interval=150", "train.save_interval=150", "train.num_threads=1"]  # fmt: skip
    combo = ablate.Combo("gsag_hybrid", "resnet18", 0)
    config = root / "configs" / "demo.yaml"

    def found() -> str:
        return ablate.resolve_combo(config, combo, out, sets)[0].output.run_dir

    generate("runs/ctx_v2", num_train=4, num_val=2, size=32, seed=0)
    assert found() != str(out / "runs" / record.name)  # runs/i10/data is not there
    generate("runs/i10/data", num_train=4, num_val=2, size=32, seed=1)  # other data
    assert found() != str(out / "runs" / record.name)
    shutil.rmtree("runs/i10/data")
    generate("runs/i10/data", num_train=4, num_val=2, size=32, seed=0)  # the same data
    assert found() == str(out / "runs" / record.name)
    sets[2] = "train.iters=250"  # another recipe is never the record
    assert found() != str(out / "runs" / record.name)


def _runs(label, mious, **extra):
    return [{**_fake(label, s, m, [m]), "label": label, **extra} for s, m in enumerate(mious)]


HYB = [0.512, 0.543, 0.559, 0.516, 0.527]


def test_comparisons_declare_families_and_holm_adjust_the_verdict_p():
    from scipy import stats as sps

    from gsag.stats import holm

    runs = _runs("gsag_hybrid", HYB) + _runs("deeplabv3", [0.506, 0.441, 0.471, 0.392, 0.519])
    runs += _runs("fcn", [0.445, 0.410, 0.433]) + _runs("gsag_basic", [0.456, 0.404, 0.431])
    runs += _runs("gsag_incremental", [0.377, 0.388, 0.415])
    runs += _runs("danet", [0.494, 0.455, 0.583, 0.517, 0.629])
    runs += _runs("gsag_hybrid-no_gate", [0.556, 0.518, 0.527])
    rows = ablate.comparisons(ablate.summarise(runs))
    fam = {(r["reference"], r["other"]): r["family"] for r in rows}
    assert fam[("gsag_hybrid", "deeplabv3")] == "heads"
    assert fam[("gsag_hybrid", "gsag_hybrid-no_gate")] == "components"
    assert fam[("gsag_incremental", "gsag_basic")] == "gsag_incremental vs gsag_basic"
    heads = [r for r in rows if r["family"] == "heads"]
    raw = [sps.ttest_ind(HYB, [x["mIoU"] for x in runs if x["label"] == r["other"]],
                         equal_var=False).pvalue for r in heads]  # fmt: skip
    assert [r["p"] for r in heads] == pytest.approx(raw)
    assert [r["holm_family"] for r in heads] == pytest.approx(holm(raw))
    assert [r["holm_all"] for r in rows] == pytest.approx(holm([r["verdict_p"] for r in rows]))
    dl = next(r for r in heads if r["other"] == "deeplabv3")
    # unadjusted, the interval excludes 0 (p 0.042); over the 5 heads, Holm p is 0.084: undecided
    assert dl["low"] > 0 and dl["p"] < 0.05 < dl["holm_family"] and not dl["decided"]
    assert "Holm p (family)" in ablate.comparisons_markdown(rows)


def test_verdict_uses_the_rank_interval_when_shapiro_rejects():
    runs = _runs("gsag_hybrid", HYB) + _runs("gsag_hybrid-ce", [0.363, 0.523, 0.522, 0.498, 0.52])
    (row,) = ablate.comparisons(ablate.summarise(runs))
    assert row["normal_a"] and not row["normal_b"] and row["verdict_method"] == "rank"
    assert row["verdict_p"] == pytest.approx(row["rank_p"]) and row["rank_p"] != row["p"]
    assert "| rank |" in ablate.comparisons_markdown([row])


def _confusion(right, wrong):  # classes background, car, boat: car/boat right vs swapped
    return [[10, 0, 0], [0, right, wrong], [0, wrong, right]]


def test_cue_learning_rate_counts_runs_over_the_threshold_with_a_wilson_interval(tmp_path):
    from scipy import stats as sps

    classes = ["background", "car", "boat"]
    # pair accuracies 0.99, 0.74 (just under the threshold), 0.5, 0.8
    cells = [(99, 1), (74, 26), (50, 50), (80, 20)]
    runs = [{**_fake("danet", s, 0.5, [0.5] * 3), "classes": classes,
             "confusion": _confusion(*c)} for s, c in enumerate(cells)]  # fmt: skip
    for r in runs:
        r["cue_accuracy"] = ablate.cue_accuracy(r)
    (row,) = ablate.cue_rows(ablate.summarise(runs))
    assert row["accuracy"] == pytest.approx([0.99, 0.74, 0.5, 0.8])
    assert (row["learned"], row["runs"]) == (2, 4)
    ref = sps.binomtest(2, 4).proportion_ci(0.95, method="wilson")
    assert (row["low"], row["high"]) == pytest.approx((ref.low, ref.high))
    # an older run without a confusion matrix: read from OUT/eval/<label>_s<seed>/metrics.json
    old = _fake("fcn", 3, 0.4, [0.4] * 3)
    assert np.isnan(ablate.cue_accuracy(old, tmp_path))
    (tmp_path / "eval" / "fcn_s3").mkdir(parents=True)
    (tmp_path / "eval" / "fcn_s3" / "metrics.json").write_text(
        json.dumps({"classes": classes, "confusion": _confusion(3, 1)})
    )
    assert ablate.cue_accuracy(old, tmp_path) == pytest.approx(0.75)


def test_report_gives_the_shared_seeds_result_beside_the_extended_one(tmp_path):
    runs = _runs("gsag_hybrid", HYB) + _runs("fcn", [0.445, 0.410, 0.433])
    for r in runs:
        r["run_dir"] = str(tmp_path / f"{r['model']}_{r['seed']}")
    assert ablate.shared_seeds(runs) == [0, 1, 2]
    md = ablate.write_report(runs, tmp_path / "report", ["c"])["markdown"].read_text()
    assert "## On seeds 0, 1, 2 only" in md
    assert "| gsag_hybrid | fcn | heads | b | 5 / 3 |" in md
    assert "| gsag_hybrid | fcn | heads | b | 3 / 3 |" in md
    assert "training randomness only" in md and "a new draw of the data as well" not in md
    # a grid with a dataset per seed says its intervals cover the data too
    out = tmp_path / "seeded"
    md = ablate.write_report(runs, out, ["c"], data_per_seed=True)["markdown"].read_text()
    assert "a new draw of the data as well" in md and "training randomness only" not in md


def test_seed_field_puts_the_data_seed_into_the_grid(tmp_path):
    over = ["data.root=/data/ctx_d{seed}", "data.val_split=test"]
    cfgs = [ablate.resolve_combo(None, ablate.Combo("fcn", "test_resnet", s), tmp_path, over)[0]
            for s in (0, 3)]  # fmt: skip
    assert [c.data.root for c in cfgs] == ["/data/ctx_d0", "/data/ctx_d3"]
    assert cfgs[1].data.val_split == "test" and cfgs[1].train.seed == 3
    # a run of another dataset never shares a folder with this one
    same = ablate.resolve_combo(None, ablate.Combo("fcn", "test_resnet", 3), tmp_path,
                                ["data.root=/data/ctx_d0"])[0]  # fmt: skip
    assert Path(same.output.run_dir).name != Path(cfgs[1].output.run_dir).name


def test_per_model_overrides_apply_to_their_model_only(tmp_path):
    over = ["optim.lr=0.001", "deeplabv3@optim.lr=0.003", "gsag_hybrid-no_gate@train.iters=7"]
    lr = {}
    for combo in (ablate.Combo("deeplabv3", "test_resnet", 0),
                  ablate.Combo("fcn", "test_resnet", 0),
                  ablate.Combo("gsag_hybrid", "test_resnet", 0, "no_gate")):  # fmt: skip
        cfg = ablate.resolve_combo(None, combo, tmp_path, over)[0]
        lr[combo.label] = (cfg.optim.lr, cfg.train.iters)
    default_iters = lr["fcn"][1]
    assert lr["deeplabv3"] == (0.003, default_iters) and lr["fcn"] == (0.001, default_iters)
    assert lr["gsag_hybrid-no_gate"] == (0.001, 7)


def test_plots_name_the_split_and_label_a_pair_of_its_own(tmp_path, monkeypatch):
    """The axes say which split was scored, and incremental − basic is not drawn as if it were
    hybrid minus basic."""
    from gsag.ablate import plots as report

    figures = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path: figures.append(fig) or path)
    row = {"diff": 0.05, "low": 0.01, "high": 0.09}
    rows = [
        {**row, "reference": "gsag_hybrid", "other": "gsag_basic"},
        {**row, "reference": "gsag_incremental", "other": "gsag_basic"},
    ]
    report.plot_differences(rows, tmp_path / "d.png")
    ax = figures[-1].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "gsag_basic", "gsag_incremental − gsag_basic"]  # fmt: skip
    assert "or the pair named" in ax.get_xlabel()
    group = {"model": "fcn", "backbone": "r18", "miou_mean": 0.4, "miou_std": 0.01,
             "miou_runs": [0.39, 0.41]}  # fmt: skip
    report.plot_miou_bars([group], tmp_path / "m.png", split="test")
    assert figures[-1].axes[0].get_ylabel().startswith("test mIoU")


# ---- the paired analysis (--paired) -------------------------------------------------------
PAIRED_HYB = [0.50, 0.47, 0.55, 0.41, 0.52, 0.48, 0.53, 0.49, 0.51, 0.45]
PAIRED_FCN = [0.47, 0.49, 0.50, 0.40, 0.46, 0.485, 0.50, 0.45, 0.509, 0.43]


def _seeded(label, mious, seeds):
    return [{**_fake(label, s, m, [m]), "label": label} for s, m in zip(seeds, mious, strict=True)]


def test_paired_comparisons_match_scipy_on_the_shared_seeds():
    from scipy import stats as sps

    seeds = list(range(5, 15))
    runs = _seeded("gsag_hybrid", PAIRED_HYB, seeds) + _seeded("fcn_pool", PAIRED_FCN, seeds)
    runs += _seeded("gsag_hybrid-no_global", [m - 0.05 for m in PAIRED_HYB[:9]], seeds[:9])
    runs.reverse()  # order of the records does not matter: seeds pair the runs
    rows = {r["other"]: r for r in ablate.paired_comparisons(ablate.summarise(runs))}
    row = rows["fcn_pool"]
    ref = sps.ttest_rel(PAIRED_HYB, PAIRED_FCN)
    ci = ref.confidence_interval(0.95)
    assert row["seeds"] == seeds and row["family"] == "heads"
    assert row["diff"] == pytest.approx(np.mean(np.subtract(PAIRED_HYB, PAIRED_FCN)))
    assert (row["low"], row["high"], row["t_p"]) == pytest.approx((ci.low, ci.high, ref.pvalue))
    flip = sps.permutation_test(
        (PAIRED_HYB, PAIRED_FCN), lambda x, y: np.mean(x - y), permutation_type="samples",
        n_resamples=np.inf, vectorized=False,
    )  # fmt: skip
    assert row["flip_p"] == pytest.approx(flip.pvalue)
    # alone in its family: Holm leaves the sign-flip p as it is
    assert row["holm_family"] == pytest.approx(row["flip_p"])
    # the variant ran 9 seeds: only those pair; a constant +0.05 is decided by 9 pairs
    other = rows["gsag_hybrid-no_global"]
    assert other["seeds"] == seeds[:9] and other["family"] == "components"
    assert other["diff"] == pytest.approx(0.05) and other["reading"] == "ref better"
    assert other["flip_p"] == pytest.approx(2 / 2**9)


def test_paired_comparisons_holm_adjust_the_sign_flip_p_within_a_family():
    from gsag.stats import holm

    seeds = list(range(10))
    runs = _seeded("gsag_hybrid", PAIRED_HYB, seeds)
    for name, shift in (("fcn_pool", 0.03), ("pspnet", -0.001), ("danet", 0.01)):
        noise = [0.004 * ((-1) ** k) * (k % 3) for k in seeds]
        runs += _seeded(
            name, [m - shift + e for m, e in zip(PAIRED_HYB, noise, strict=True)], seeds
        )
    rows = ablate.paired_comparisons(ablate.summarise(runs))
    assert [r["other"] for r in rows] == ["fcn_pool", "pspnet", "danet"]
    assert [r["holm_family"] for r in rows] == pytest.approx(holm([r["flip_p"] for r in rows]))
    assert rows[0]["reading"] == "ref better" and rows[1]["reading"] == "undecided"


def test_cue_tests_count_at_each_threshold_and_use_fishers_test():
    from scipy import stats as sps

    classes = ["background", "car", "boat"]

    def group(label, cells):
        runs = []
        for s, c in enumerate(cells):
            run = {**_fake(label, s, 0.5, [0.5] * 3), "label": label, "classes": classes,
                   "confusion": _confusion(*c)}  # fmt: skip
            run["cue_accuracy"] = ablate.cue_accuracy(run)
            runs.append(run)
        return runs

    runs = group("gsag_hybrid", [(99, 1), (90, 10), (80, 20), (76, 24)])
    runs += group("fcn_pool", [(96, 4), (60, 40), (50, 50), (74, 26)])
    rows = {r["model"]: r for r in ablate.cue_tests(ablate.summarise(runs))}
    assert rows["gsag_hybrid"]["counts"] == {"0.75": 4, "0.85": 2, "0.95": 1}
    assert rows["fcn_pool"]["counts"] == {"0.75": 1, "0.85": 1, "0.95": 1}
    assert np.isnan(rows["gsag_hybrid"]["fisher_p"])
    expected = sps.fisher_exact([[4, 0], [1, 3]]).pvalue
    assert rows["fcn_pool"]["fisher_p"] == pytest.approx(expected)


def test_paired_report_puts_the_paired_analysis_first(tmp_path):
    seeds = list(range(5, 15))
    runs = _seeded("gsag_hybrid", PAIRED_HYB, seeds) + _seeded("fcn_pool", PAIRED_FCN, seeds)
    for r in runs:
        r["run_dir"] = str(tmp_path / f"{r['label']}_{r['seed']}")
    plain = ablate.write_report(runs, tmp_path / "plain", ["c"])
    assert "Paired by seed" not in plain["markdown"].read_text()
    assert "paired" not in json.loads(plain["json"].read_text())
    paths = ablate.write_report(runs, tmp_path / "paired", ["c"], paired=True)
    md = paths["markdown"].read_text()
    assert md.index("## Paired by seed") < md.index("## Unpaired comparisons")
    assert "| gsag_hybrid | fcn_pool | heads | b | 10 |" in md
    data = json.loads(paths["json"].read_text())
    assert data["paired"][0]["seeds"] == seeds and "cue_tests" in data
