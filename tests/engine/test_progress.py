"""The training display: plain `key=value` lines when stdout is a file, a two-line bar that fits
80 columns in a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from gsag.config import save_config
from gsag.engine.progress import BarProgress, clock, eval_line, open_progress, train_line
from tests.helpers.configs import tiny_config

TIMES = {"sec_per_iter": 3.03, "images_per_s": 2.64, "data_share": 0.031, "compile_s": 0.0}


def fields(line: str) -> tuple[str, dict[str, str]]:
    """A plain log line's tag and its key=value fields."""
    tag, *rest = line.split()
    return tag, dict(item.split("=", 1) for item in rest)


def test_train_and_eval_lines_parse_into_their_values():
    losses = {"loss": 1.43571, "loss_main": 1.2, "loss_aux": 0.23571}
    tag, f = fields(train_line(10, 300, losses, 1e-3, {**TIMES, "peak_mem_gib": 12.34}))
    assert tag == "train" and f["iter"] == "10/300"
    assert {k: float(f[k]) for k in losses} == pytest.approx(losses, abs=5e-5)
    assert float(f["lr"]) == 1e-3 and float(f["s/it"]) == 3.03 and float(f["img/s"]) == 2.6
    assert f["data"] == "3%" and f["mem"] == "12.3GiB"
    assert f["eta"] == clock(290 * 3.03) == "0:14:39"
    assert "mem" not in fields(train_line(10, 300, losses, 1e-3, TIMES))[1]  # CPU: no memory
    metrics = {"mIoU": 0.4512, "aAcc": 0.8, "mAcc": 0.55, "FWIoU": 0.7}
    tag, f = fields(eval_line(150, 300, metrics, best=0.5, seconds=12.34))
    assert tag == "eval" and f["iter"] == "150/300"
    assert f == {**f, "mIoU": "45.12%", "aAcc": "80.00%", "best": "50.00%", "time": "12.3s"}


def test_clock():
    assert clock(0) == "0:00:00" and clock(3725.4) == "1:02:05" and clock(float("nan")) == "?"


def test_terminal_bar_fits_80_columns():
    from rich.console import Console

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    progress = open_progress(True, 0, 80000, stream=Tty())
    assert isinstance(progress, BarProgress)
    try:  # the widest values a run shows
        progress.update(40000, 123.4567, 1.23e-2)
        progress.log(40000, {}, 1.23e-2, {**TIMES, "images_per_s": 1234.5, "peak_mem_gib": 79.9})
        progress.eval_done(40000, {"mIoU": 0.9999}, 95.4)
        out = Console(width=80, file=io.StringIO(), record=True, color_system=None)
        for renderable in progress.bar.get_renderables():
            out.print(renderable)
    finally:
        progress.close()
    lines = out.export_text().rstrip("\n").splitlines()
    assert len(lines) == 2, lines
    assert all(len(ln.rstrip()) <= 80 for ln in lines) and "…" not in "".join(lines), lines
    assert "40000/80000" in lines[0] and "mIoU 100.0" in lines[0]
    assert "loss 123.4567" in lines[1] and "mem 79.9 GiB" in lines[1]


def test_training_with_stdout_in_a_file_logs_parseable_lines(synth_root, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, run, "train.iters=4", "train.log_interval=2")
    config = tmp_path / "tiny.yaml"
    save_config(cfg, config)
    log = tmp_path / "log.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:  # as under nohup or SLURM: stdout is a file
        cmd = [sys.executable, "-m", "gsag", "train", str(config), "--device", "cpu"]
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.PIPE, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    lines = [
        fields(ln) for ln in log.read_text().splitlines() if ln.split()[:1] in (["train"], ["eval"])
    ]
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    # one line per logged iteration and per evaluation, in order, with metrics.jsonl's values
    assert [(tag, f["iter"]) for tag, f in lines] == [
        ("train", "2/4"), ("eval", "2/4"), ("train", "4/4"), ("eval", "4/4"),
    ]  # fmt: skip
    for (tag, f), record in zip(lines, records, strict=True):
        assert record["type"] == {"train": "train", "eval": "val"}[tag]
        if tag == "train":
            assert float(f["loss"]) == pytest.approx(record["loss"], abs=5e-5)
            assert float(f["lr"]) == pytest.approx(record["lr"], rel=5e-3)
            assert float(f["s/it"]) == pytest.approx(record["sec_per_iter"], abs=5e-4)
        else:
            assert float(f["mIoU"].rstrip("%")) == pytest.approx(100 * record["mIoU"], abs=5e-3)


def _fragments(text: str) -> list[str]:
    """Lines of `text` that a log file should not hold: carriage returns, ANSI escapes, rich's
    bar (a run of ━ beside an `n/m` count) and spinner frames (braille dots)."""
    import re

    bar = re.compile(r"━{3,}.*\d+/\d+|\d+/\d+.*━{3,}")
    return [
        line
        for line in text.split("\n")
        if "\r" in line or "\x1b" in line or bar.search(line) or re.search("[\u2800-\u28ff]", line)
    ]


def test_commands_write_no_bars_or_spinners_off_a_terminal(synth_root, evaluated_run, tmp_path,
                                                           capfd):  # fmt: skip
    """stdout and stderr captured (not a terminal): the data, eval, predict and models commands
    print their results without progress-bar or spinner fragments (they printed the bar's last
    frame, e.g. `rendering ━━━━ 16/16 0:00:00`)."""
    from gsag.cli import main

    data = tmp_path / "d"
    runs = [
        ["data", "synth", "--out", str(data), "--num-train", "3", "--num-val", "1", "--size", "32"],
        ["data", "check", str(data)],
        ["eval", str(evaluated_run / "best.pt"), "--workers", "0", "--out", str(tmp_path / "e")],
        ["predict", str(evaluated_run / "best.pt"), "--input", str(synth_root / "JPEGImages"),
         "--out", str(tmp_path / "p"), "--no-overlay"],
        ["models", "--backbone", "test_resnet", "--models", "fcn"],
    ]  # fmt: skip
    for argv in runs:
        assert main([*argv, "--threads", "1"] if argv[0] in ("eval", "predict") else argv) == 0
        out, err = capfd.readouterr()
        assert (out + err).strip(), argv  # each says something
        assert not _fragments(out + err), (argv, _fragments(out + err))


def test_task_bar_off_a_terminal_writes_plain_progress_lines(monkeypatch):
    """A long task off a terminal says how far it is, as plain lines."""
    from rich.console import Console

    from gsag.engine import progress

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    out = io.StringIO()
    console = Console(file=out)
    assert not console.is_terminal
    with progress.task_bar(console=console) as bar:
        task = bar.add_task("rendering", total=3)
        for _ in range(3):
            bar.advance(task)
    assert out.getvalue().splitlines() == ["rendering: 2/3", "rendering: 3/3"]
    assert not _fragments(out.getvalue())
    quiet = io.StringIO()
    with progress.task_bar(console=Console(file=quiet), quiet=True) as bar:
        bar.update(bar.add_task("x", total=2), completed=2)
    assert quiet.getvalue() == ""
