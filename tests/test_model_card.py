"""gsag.trained.card: the card parses as Hub metadata and its numbers are metrics.json's."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from huggingface_hub import ModelCard

import gsag
from gsag.trained.card import SYNTHETIC_DATASET
from gsag.trained.save import find_checkpoint, save_pretrained

pytestmark = pytest.mark.usefixtures("single_thread")


def _rows(text: str, header: str) -> list[list[str]]:
    """The cells of the markdown table whose header line is `header`."""
    lines = text.splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def test_card_parses_and_its_numbers_are_metrics_json(evaluated_run, tmp_path):
    folder = save_pretrained(evaluated_run, tmp_path / "m", repo_id="your-name/tiny")
    metrics = json.loads((evaluated_run / "eval_best_val_whole" / "metrics.json").read_text())
    checkpoint = torch.load(evaluated_run / "best.pt", weights_only=True)
    card = ModelCard.load(folder / "README.md")

    data = card.data
    assert (data.library_name, data.pipeline_tag) == ("gsag", "image-segmentation")
    assert data.datasets == [SYNTHETIC_DATASET] and "gsag" in data.tags
    (result,) = data.eval_results
    assert result.metric_type == "mean_iou" and result.metric_value == metrics["mIoU"]
    assert (result.task_type, result.dataset_split) == ("image-segmentation", "val")

    text = card.text
    assert "does not segment photos" in text.strip().splitlines()[0]
    assert _rows(text, "| mIoU | aAcc | mAcc | FWIoU |") == [
        [_pct(metrics[k]) for k in ("mIoU", "aAcc", "mAcc", "FWIoU")]
    ]
    classes = _rows(text, "| index | class | colour (RGB) | IoU |")
    assert [r[1] for r in classes] == metrics["classes"]
    assert [r[3] for r in classes] == [_pct(v) for v in metrics["IoU"]]
    assert f"- device: {metrics['settings']['device']}" in text
    assert "iteration 2 of 2, batch 2, one run with seed 0" in text
    model = gsag.load_pretrained(folder)
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux_head."))
    assert f"{params / 1e6:.2f} M parameters" in text
    assert 'gsag.Predictor.from_pretrained("your-name/tiny")' in text
    assert "![training curve](plots/curve.png)" in text and (folder / "plots/curve.png").is_file()
    assert "## Limitations" in text
    full = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(full) == checkpoint["config"]


def test_the_evaluated_checkpoint_is_chosen_and_a_run_without_evaluation_says_so(
    evaluated_run, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    report = run / "eval_best_val_whole" / "metrics.json"
    metrics = json.loads(report.read_text())
    metrics["settings"]["checkpoint"] = "somewhere/else/last.pt"  # typed in another folder
    report.write_text(json.dumps(metrics))
    assert find_checkpoint(run) == (run, run / "last.pt", report)
    assert find_checkpoint(run, "best.pt") == (run, run / "best.pt", None)

    shutil.rmtree(run / "eval_best_val_whole")
    folder = save_pretrained(run, tmp_path / "m")
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results is None and "model-index" not in card.content
    assert "reports no accuracy" in card.text
    assert sorted(p.name for p in (folder / "plots").iterdir()) == ["curve.png"]


def test_a_model_not_trained_on_the_generated_benchmark_makes_no_photo_claim(tmp_path):
    model = gsag.create_model("fcn", 3, backbone="test_resnet", aux=False)
    meta = {"classes": ["sky", "road", "tree"], "palette": [[0, 0, 255], [128, 128, 128],
            [0, 255, 0]], "config": {"data": {"root": "data/streets", "synthetic": False}}}  # fmt: skip
    folder = save_pretrained(model, tmp_path / "m", meta=meta)
    card = ModelCard.load(folder / "README.md")
    first = card.text.strip().splitlines()[0]
    assert first.startswith("# fcn on test_resnet: streets") and "photo" not in card.text.lower()
    assert card.data.datasets == ["streets"]


def test_the_card_reports_the_runs_own_evaluation_and_says_which(evaluated_run, tmp_path):
    """A later multi-scale + flip evaluation does not become the card's number (it did: the
    newest evaluation won); `evaluation=` picks it when asked, and the card names either."""
    import os
    import time

    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    own = json.loads((run / "eval_best_val_whole" / "metrics.json").read_text())
    own["settings"]["checkpoint"] = "tiny-run/best.pt"  # as typed (the copy's, not the original)
    (run / "eval_best_val_whole" / "metrics.json").write_text(json.dumps(own))
    other = json.loads(json.dumps(own))
    other["mIoU"] = 0.987
    other["settings"].update(mode="multiscale", scales=[0.75, 1.0], flip=True)
    later = run / "eval_best_val_multiscale_s0.75-1_flip" / "metrics.json"
    later.parent.mkdir()
    later.write_text(json.dumps(other))
    stamp = time.time() + 60
    os.utime(later, (stamp, stamp))  # the newest evaluation of best.pt

    card = ModelCard.load(save_pretrained(run, tmp_path / "m") / "README.md")
    assert card.data.eval_results[0].metric_value == own["mIoU"] != other["mIoU"]
    assert "- evaluation: split `val`, mode whole, one scale, no flip (the run's own settings)" in (
        card.text
    )

    asked = save_pretrained(run, tmp_path / "m2", evaluation=later)
    card = ModelCard.load(asked / "README.md")
    assert card.data.eval_results[0].metric_value == other["mIoU"]
    assert "- evaluation: split `val`, mode multiscale, scales 0.75, 1, flip (chosen with " in (
        card.text
    )

    # only a multi-scale evaluation: the card reports none rather than take it unasked
    shutil.rmtree(run / "eval_best_val_whole")
    card = ModelCard.load(save_pretrained(run, tmp_path / "m3") / "README.md")
    assert card.data.eval_results is None and "reports no accuracy" in card.text
