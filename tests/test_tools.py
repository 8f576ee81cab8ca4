"""tools/pair_accuracy.py: the context pairs' accuracy against a per-pixel count, and its plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("pair_accuracy", ROOT / "tools/pair_accuracy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metrics(rng, classes, n=4000):
    target = rng.integers(0, len(classes), n)
    pred = np.where(rng.random(n) < 0.6, target, rng.integers(0, len(classes), n))
    return target, pred


def test_pair_accuracy_counts_pixels_of_the_pair_only(tmp_path, capsys):
    tool = _tool()
    classes = ["background", "car", "boat", "rider", "walker"]
    rng = np.random.default_rng(0)
    for name in ("hybrid_s0", "hybrid_s1", "basic_s0"):
        target, pred = _metrics(rng, classes)
        confusion = np.zeros((len(classes), len(classes)), dtype=int)
        np.add.at(confusion, (target, pred), 1)
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(
            json.dumps({"confusion": confusion.tolist(), "classes": classes})
        )
        for a, b in tool.PAIRS:
            ia, ib = classes.index(a), classes.index(b)
            in_pair = np.isin(target, [ia, ib]) & np.isin(pred, [ia, ib])
            expected = (pred[in_pair] == target[in_pair]).mean()
            got = tool.pair_accuracy(confusion.tolist(), classes, a, b)
            assert abs(got - expected) < 1e-12
    paths = sorted(str(p) for p in tmp_path.glob("*/metrics.json"))
    tool.main([*paths, "--plot", str(tmp_path / "pairs.png")])
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| metrics | car-vs-boat acc | rider-vs-walker acc |"
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| basic_s0",
        "| hybrid_s0",
        "| hybrid_s1",
    ]
    assert (tmp_path / "pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pair_accuracy_is_nan_when_the_pair_is_never_predicted():
    tool = _tool()
    confusion = [[5, 0, 0], [3, 0, 0], [2, 0, 0]]  # car and boat always predicted background
    assert np.isnan(tool.pair_accuracy(confusion, ["background", "car", "boat"], "car", "boat"))
