"""gsag demo: data generation when missing, training, evaluation, predictions, report."""

from __future__ import annotations

import json
import re

import pytest
import torch

from tests.helpers.configs import TINY_CLI_SETS

TINY = TINY_CLI_SETS


def test_demo_generates_data_trains_and_writes_a_report(tmp_path, monkeypatch, capsys):
    import gsag.data.synth as synth
    from gsag.cli import main

    generated = []
    real_generate = synth.generate

    def small_generate(out_dir, seed=0, **kwargs):  # the demo's data, shrunk for the test
        generated.append(out_dir)
        return real_generate(out_dir, num_train=8, num_val=4, size=64, seed=seed)

    monkeypatch.setattr(synth, "generate", small_generate)
    root, run = tmp_path / "data", tmp_path / "run"
    args = ["demo", "--set", f"data.root={root}", "--set", f"output.run_dir={run}",
            "--images", "3", *TINY]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main([*args, "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert [str(p) for p in generated] == [str(root)]
    printed = capsys.readouterr().out
    report = run / "report" / "report.md"
    assert str(report) in printed.replace("\n", "")
    # not a terminal: no bar or spinner frame of the drawing step
    assert not any("drawing" in ln for ln in printed.splitlines()), printed
    text = report.read_text()
    # the report reuses training's last evaluation, and says so
    assert "- evaluation: the last one of training, at iteration 2, made during training" in text
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    # the table's mIoU is the evaluation of the last checkpoint, as written to metrics.json
    row = re.search(r"\| mIoU \| aAcc \| mAcc \| FWIoU \|\n\| .* \|\n\| ([\d.]+) \|", text)
    assert row and float(row.group(1)) == pytest.approx(100 * metrics["mIoU"], abs=0.006)
    panels = sorted((run / "report" / "predictions").glob("*.png"))
    assert [p.stem for p in panels] == ["val_00000", "val_00001", "val_00002"]
    assert all(f"predictions/{p.name}" in text for p in panels)
    for name in ("curve.png", "confusion.png"):
        assert (run / "report" / name).read_bytes()[:4] == b"\x89PNG"
        assert name in text

    # a second demo into the same folder refuses; --resume reuses the finished run and the data
    capsys.readouterr()
    assert main(args) == 2
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err
    try:
        assert main([*args, "--resume", "--threads", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert len(generated) == 1
    again = json.loads((run / "report" / "metrics.json").read_text())
    # the first report took training's last evaluation; this one evaluated last.pt anew
    assert again["confusion"] == metrics["confusion"] and again["mIoU"] == metrics["mIoU"]
    out, err = capsys.readouterr()
    assert "is at iteration 2 of 2: nothing to train" in err
    assert "nan" not in out and "train iter=" not in out  # no empty progress display
    # re-evaluation keeps the run's training facts (from its metrics.jsonl), not this call's:
    # one thread for training, beside the two of the evaluation made now (each says its source)
    facts = [ln for ln in text.splitlines() if ln.startswith("- training: ")]
    assert len(facts) == 1 and facts[0].startswith("- training: 2 of 2 iterations, ")
    assert facts[0].endswith(", 1 torch CPU thread (from the run's metrics.jsonl)")
    lines = report.read_text().splitlines()
    assert facts[0] in lines
    (evaluation,) = [ln for ln in lines if ln.startswith("- evaluation: ")]
    assert evaluation.startswith("- evaluation: made for this report on cpu, 2 torch CPU threads")
    assert not any(ln.startswith("- device: ") for ln in lines)  # the mixed line is gone

    # --out is the run folder: training, checkpoints and report all go there
    other = tmp_path / "other"
    assert main([*args, "--out", str(other)]) == 0
    assert (other / "last.pt").is_file() and (other / "report" / "report.md").is_file()


@pytest.mark.slow
def test_full_demo_config(tmp_path):
    """The real `make demo` run (several minutes on 2 CPU cores)."""
    from gsag.cli import main

    run = tmp_path / "run"
    args = ["demo", "--set", f"data.root={tmp_path / 'data'}", "--set", f"output.run_dir={run}"]
    assert main(args) == 0
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["mIoU"] > 0.2  # far above chance on the 8-class benchmark


def test_demo_and_train_generate_the_same_data_whatever_train_seed(tmp_path, monkeypatch):
    """Generated data uses generator seed 0 in `gsag demo` as in `gsag train`, whatever
    train.seed is (the seed of a run changes its training, not its data)."""
    import gsag.data.synth as synth
    import gsag.engine.train as engine
    from gsag.cli import main
    from gsag.config import load_config
    from gsag.engine.datasets import ensure_data

    seeds = []

    def record(out_dir, seed=0, **kwargs):
        seeds.append(seed)
        out_dir.mkdir(parents=True)
        (out_dir / "classes.yaml").write_text("classes: [a, b]\n")

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(synth, "generate", record)
    monkeypatch.setattr(engine, "train", stop)
    args = ["demo", "--set", f"data.root={tmp_path / 'demo'}", "--set", "train.seed=3",
            "--out", str(tmp_path / "run")]  # fmt: skip
    with pytest.raises(Stop):
        main(args)
    ensure_data(load_config("configs/demo.yaml", [f"data.root={tmp_path / 'train'}",
                                                  "train.seed=3"]))  # fmt: skip
    assert seeds == [0, 0]
