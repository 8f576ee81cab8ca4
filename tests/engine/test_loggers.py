"""The trackers of `train.loggers`, read back from what they wrote: TensorBoard events, metrics.csv,
W&B's offline run files and an MLflow file store, for a run killed after iteration 3 (last.pt
at 2) and resumed to 4. W&B and MLflow are test extras: their tests skip when absent."""

from __future__ import annotations

import csv
import importlib.util
import io
import json

import numpy as np
import pytest
from PIL import Image

from gsag.data.layout import open_dataset
from gsag.engine import loggers
from gsag.engine.loggers import TrackerError, Trackers
from gsag.engine.run_log import read_metrics_log
from gsag.engine.train import train
from tests.helpers.configs import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")

OPTIONAL = [n for n in ("wandb", "mlflow") if importlib.util.find_spec(n) is not None]
needs = {
    n: pytest.mark.skipif(n not in OPTIONAL, reason=f"{n} not installed: pip install gsag[test]")
    for n in ("wandb", "mlflow")
}


@pytest.fixture(scope="module")
def tracked(synth_root, tmp_path_factory):
    """(run folder, tracker folder, config) of a run logged to every tracker installed."""
    base = tmp_path_factory.mktemp("tracked")
    run = base / "run"
    (base / "wandb").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_DIR", str(base / "wandb"))
        mp.setenv("MLFLOW_TRACKING_URI", (base / "mlruns").as_uri())
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        names = ["tensorboard", "csv", *OPTIONAL]
        cfg = tiny_config(
            synth_root, run, f"train.loggers=[{', '.join(names)}]", "train.tb_images=2"
        )
        train(cfg, quiet=True, stop_after=3)  # logs 1..3, last.pt at 2
        first = json.loads((run / "trackers.json").read_text()) if OPTIONAL else {}
        train(cfg, quiet=True, resume=True)
    return run, base, cfg, first


def panel_size(synth_root, count: int = 2) -> tuple[int, int]:
    """(height, width) of the stacked panel of the first `count` validation images."""
    val = open_dataset(synth_root, "val")
    shapes = [val.load(i)[1].shape for i in range(count)]
    return sum(h for h, _ in shapes), 3 * max(w for _, w in shapes)


def logged(run):
    train_records, evals = read_metrics_log(run / "metrics.jsonl")
    return {r["iteration"]: r for r in train_records}, {r["iteration"]: r for r in evals}


def test_tensorboard_events_hold_scalars_per_class_iou_and_the_panel(tracked, synth_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, *_ = tracked
    train_log, evals = logged(run)
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    losses = {e.step: e.value for e in events.Scalars("train/loss")}
    assert sorted(losses) == [1, 2, 3, 4]  # the killed run's step 3 purged, logged again
    for step, value in losses.items():
        assert value == pytest.approx(train_log[step]["loss"], rel=1e-6)
    assert [e.step for e in events.Scalars("val/mIoU")] == [2, 4]
    named = [k for k, v in evals[4]["IoU"].items() if v is not None]
    assert named and all(f"val_IoU/{k}" in events.Tags()["scalars"] for k in named)
    images = events.Images("val_predictions")
    assert [e.step for e in images] == [2, 4]
    assert (images[-1].height, images[-1].width) == panel_size(synth_root)


def test_csv_has_one_row_per_record_and_the_resume_drops_the_killed_tail(tracked):
    run, *_ = tracked
    train_log, evals = logged(run)
    rows = list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))
    train_rows = [r for r in rows if r["train/loss"]]
    val_rows = [r for r in rows if r["val/mIoU"]]
    assert [int(r["step"]) for r in train_rows] == [1, 2, 3, 4]
    assert [int(r["step"]) for r in val_rows] == [2, 4]
    for r in train_rows:
        assert float(r["train/loss"]) == train_log[int(r["step"])]["loss"]
        assert float(r["train/lr"]) == pytest.approx(train_log[int(r["step"])]["lr"])
    for r in val_rows:
        record = evals[int(r["step"])]
        assert float(r["val/mIoU"]) == record["mIoU"]
        for name, iou in record["IoU"].items():
            assert r[f"val_IoU/{name}"] == ("" if iou is None else repr(iou))


@needs["wandb"]
def test_wandb_offline_run_files_hold_the_config_scalars_and_images(tracked, synth_root):
    from tests.helpers.wandb_log import history, read_records

    run, base, cfg, first = tracked
    run_id = json.loads((run / "trackers.json").read_text())["wandb"]
    assert run_id == first["wandb"]  # the resumed run continues the same W&B run
    folders = sorted((base / "wandb" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(folders) == 2  # the first process and the resumed one, one run id
    train_log, evals = logged(run)
    steps: dict[int, dict[str, str]] = {}
    for folder in folders:
        records = read_records(folder / f"run-{run_id}.wandb")
        (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert run_record.run_id == run_id and run_record.project == cfg.train.project
        config = {u.key: json.loads(u.value_json) for u in run_record.config.update}
        assert config["optim"]["lr"] == cfg.optim.lr and config["train"]["loggers"][-1] in OPTIONAL
        steps.update(history(folder / f"run-{run_id}.wandb"))
    for step in (1, 2, 3, 4):
        assert float(steps[step]["train/loss"]) == pytest.approx(train_log[step]["loss"], rel=1e-6)
    assert float(steps[4]["val/mIoU"]) == pytest.approx(evals[4]["mIoU"])
    pictures = {
        p.name.split("_")[2]: p
        for f in folders
        for p in (f / "files/media/images").glob("val_predictions_*.png")
    }
    assert sorted(pictures) == ["2", "4"]
    with Image.open(pictures["4"]) as image:
        assert image.size[::-1] == panel_size(synth_root)


@needs["mlflow"]
def test_mlflow_file_store_holds_one_run_with_params_metrics_and_images(tracked, synth_root):
    from mlflow import MlflowClient

    run, base, cfg, first = tracked
    run_id = json.loads((run / "trackers.json").read_text())["mlflow"]
    assert run_id == first["mlflow"]
    client = MlflowClient(tracking_uri=(base / "mlruns").as_uri())
    found = client.get_run(run_id)
    assert found.info.status == "FINISHED"
    experiment = client.get_experiment_by_name(cfg.train.project)
    assert len(client.search_runs([experiment.experiment_id])) == 1  # resumed, not a new run
    assert found.data.params["optim.lr"] == str(cfg.optim.lr)
    assert found.data.params["loss.type"] == cfg.loss.type
    train_log, evals = logged(run)
    history = {m.step: m.value for m in client.get_metric_history(run_id, "train/loss")}
    assert sorted(history) == [1, 2, 3, 4]
    assert history[4] == pytest.approx(train_log[4]["loss"], rel=1e-6)
    assert [m.step for m in client.get_metric_history(run_id, "val/mIoU")] == [2, 4]
    name, iou = next((k, v) for k, v in evals[4]["IoU"].items() if v is not None)
    (last,) = [m for m in client.get_metric_history(run_id, f"val_IoU/{name}") if m.step == 4]
    assert last.value == pytest.approx(iou)
    images = [a.path for a in client.list_artifacts(run_id, "images") if a.path.endswith(".png")]
    assert sorted(p.split("+")[2] for p in images) == ["2", "4"]
    local = client.download_artifacts(run_id, next(p for p in images if "+step+4+" in p))
    with Image.open(local) as image:
        assert image.size[::-1] == panel_size(synth_root)


def test_a_missing_extra_is_one_error_line_before_any_work(capsys, tmp_path, monkeypatch):
    import gsag.engine.train
    from gsag.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )

    def work(*args, **kwargs):
        raise AssertionError("training started before the missing extra was refused")

    monkeypatch.setattr(gsag.engine.train, "_train", work)
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  loggers: [tensorboard, wandb]\n")
    code = main(["train", str(config), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == (
        "error: train.loggers has wandb, which is not installed; pip install 'gsag[wandb]' "
        "(or drop wandb from train.loggers)"
    )
    assert not (tmp_path / "run").exists()


class Recorder:
    def __init__(self):
        self.calls = []

    def scalars(self, values, step):
        self.calls.append(("scalars", step))

    def image(self, key, image, step):
        self.calls.append(("image", key, step))

    def close(self):
        self.calls.append(("close",))


class Broken(Recorder):
    def scalars(self, values, step):
        raise OSError("the server went away")


def test_a_tracker_that_fails_warns_once_and_the_others_go_on():
    good, bad = Recorder(), Broken()
    trackers = Trackers([bad, good])
    with pytest.warns(UserWarning, match="Broken stopped .*the server went away.*training goes on"):
        trackers.scalars({"train/loss": 1.0}, 1)
    trackers.image("val_predictions", np.zeros((2, 6, 3), np.uint8), 2)
    trackers.close()
    assert good.calls == [("scalars", 1), ("image", "val_predictions", 2), ("close",)]
    assert bad.calls == []


def test_a_tracker_that_cannot_start_is_one_error_naming_the_fix(tmp_path, monkeypatch):
    opened = []

    def unreachable(cfg, run_dir, run_id):
        raise ConnectionError("http://mlflow.invalid\nrefused")

    monkeypatch.setattr(loggers, "MlflowTracker", unreachable)
    monkeypatch.setattr(
        loggers, "CsvLog", lambda path, start: opened.append(Recorder()) or opened[-1]
    )
    cfg = tiny_config(tmp_path, tmp_path / "run", "train.loggers=[csv, mlflow]")
    with pytest.raises(TrackerError) as err:
        loggers.open_trackers(cfg, tmp_path, 0)
    assert str(err.value) == (
        "train.loggers: mlflow could not start (ConnectionError: http://mlflow.invalid refused); "
        "set MLFLOW_TRACKING_URI to a tracking server or database (e.g. sqlite:///mlflow.db), or "
        "drop mlflow from train.loggers"
    )
    assert opened[0].calls == [("close",)]  # the trackers already open are closed
