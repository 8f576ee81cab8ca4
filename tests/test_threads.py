"""The thread count of a run: the user's, else the cores free at its start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gsag.threads import ThreadChoice, choose_threads


@pytest.mark.parametrize(
    "cores, load, expected, least",
    [
        (2, 0.0, 2, False),  # idle
        (2, 0.3, 2, False),  # 1.7 free
        (2, 1.0, 2, True),  # one core busy: still two (waiting threads sleep)
        (2, 7.0, 2, True),  # overloaded
        (8, 2.2, 6, False),  # the cores free
        (8, 7.4, 2, True),
        (8, 0.0, 8, False),
        (1, 0.0, 1, False),
        (1, 3.0, 1, True),
    ],
)
def test_free_cores_rounded_at_least_two(cores, load, expected, least):
    choice = choose_threads(0, cores, load)
    assert choice.threads == expected
    reason = f"{max(cores - load, 0):.1f} cores free of {cores} (load {load:.2f})"
    assert choice.reason == reason + (f", {min(cores, 2)} at least" if least else "")


def test_a_count_set_by_the_user_always_wins():
    choice = choose_threads(1, cores=8, load=0.0, source="train.num_threads")
    assert choice == ThreadChoice(1, "set by train.num_threads")
    assert choice.line() == "using 1 torch thread: set by train.num_threads"


def test_omp_num_threads_counts_as_set_by_the_user():
    choice = choose_threads(0, cores=8, load=0.0, env={"OMP_NUM_THREADS": "3"})
    assert choice.threads == 3 and "OMP_NUM_THREADS" in choice.reason
    assert choose_threads(0, 8, 0.0, env={"OMP_NUM_THREADS": ""}).threads == 8
    assert choose_threads(4, 8, 0.0, env={"OMP_NUM_THREADS": "3"}).threads == 4  # flag first


def test_unknown_load_takes_every_core():
    assert choose_threads(0, cores=4, load=None).threads == 4


def test_line_names_the_wait_policy():
    line = choose_threads(0, cores=2, load=1.93, env={"OMP_WAIT_POLICY": "PASSIVE"}).line()
    assert line == "using 2 torch threads: 0.1 cores free of 2 (load 1.93), 2 at least; " + (
        "OMP_WAIT_POLICY=PASSIVE"
    )


# -- how waiting threads wait ------------------------------------------------------------------
def test_waiting_threads_sleep_unless_the_user_chose(monkeypatch):
    from gsag import threads

    monkeypatch.delitem(sys.modules, "torch")  # as in a fresh `gsag` process
    env: dict[str, str] = {}
    assert threads.sleep_when_waiting(env) and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for own in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}):
        env = dict(own)
        assert not threads.sleep_when_waiting(env) and env == own


def test_too_late_once_torch_is_imported():
    from gsag import threads

    assert "torch" in sys.modules  # the test session has imported it
    env: dict[str, str] = {}
    assert not threads.sleep_when_waiting(env) and env == {}


def _openmp_settings(code: str, env: dict[str, str]) -> str:
    """stderr of `python -c code` with OpenMP's settings printed as its runtime read them."""
    run_env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    }
    run_env.update(env, OMP_DISPLAY_ENV="verbose")
    out = subprocess.run(
        [sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True
    )
    return out.stderr


def test_the_gsag_entry_point_makes_torchs_openmp_threads_sleep():
    """libgomp prints its settings at start (OMP_DISPLAY_ENV): a spin count of 0 is PASSIVE."""
    plain = _openmp_settings("import torch", {})
    if "GOMP_SPINCOUNT" not in plain:
        pytest.skip("torch's OpenMP runtime here is not GNU libgomp")
    assert "GOMP_SPINCOUNT = '300000'" in plain  # its default: spin before sleeping
    via_gsag = "from gsag.cli import main; main(['models', '--backbones', 'resnet18'])"
    assert "GOMP_SPINCOUNT = '0'" in _openmp_settings(via_gsag, {})
    kept = _openmp_settings(via_gsag, {"OMP_WAIT_POLICY": "ACTIVE"})
    assert "GOMP_SPINCOUNT = '0'" not in kept and "OMP_WAIT_POLICY = 'ACTIVE'" in kept


# -- the first line of a training run --------------------------------------------------------
def _train_cli(synth_root, tmp_path, monkeypatch, capsys, *extra: str) -> list[str]:
    """`gsag train` of the tiny config (1 iteration) on a machine said to have 2 cores and a
    load of 1.5; returns its stderr lines."""
    from gsag import threads
    from gsag.cli import main
    from gsag.config import save_config
    from tests.helpers.configs import tiny_config

    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "load_average", lambda: 1.5)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(synth_root, tmp_path / "unused", "train.num_threads=0"), config)
    run = tmp_path / "run"
    argv = ["train", str(config), "--set", "train.iters=1", "--out", str(run), *extra]
    capsys.readouterr()
    assert main(argv) == 0
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_first_line_of_a_training_run_says_the_threads_and_why(
    synth_root, tmp_path, monkeypatch, capsys
):
    lines = _train_cli(synth_root, tmp_path, monkeypatch, capsys)
    assert lines[0] == "using 2 torch threads: 0.5 cores free of 2 (load 1.50), 2 at least"


def test_first_line_says_when_the_user_set_the_threads(synth_root, tmp_path, monkeypatch, capsys):
    lines = _train_cli(synth_root, tmp_path, monkeypatch, capsys, "--threads", "1")
    assert lines[0] == "using 1 torch thread: set by --threads"


def test_training_runs_with_the_chosen_count(synth_root, tmp_path, monkeypatch):
    import torch

    from gsag import threads
    from gsag.engine.train import train
    from tests.helpers.configs import tiny_config

    seen = []
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "load_average", lambda: 1.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    before = torch.get_num_threads()
    cfg = tiny_config(synth_root, tmp_path / "run", "train.iters=1", "train.num_threads=0")
    assert train(cfg, quiet=True)["threads"] == 3  # 3.0 cores free of 4
    assert seen[0] == 3 and torch.get_num_threads() == before  # restored afterwards
