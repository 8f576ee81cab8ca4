"""Fixtures shared by the whole suite: a small generated dataset and one torch thread per test.

Fixtures of one folder live in its own conftest.py (tests/models/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A generated context-benchmark VOC tree: 8 train + 4 val images of 64x64, seed 0."""
    from gsag.data.synth import generate

    return generate(tmp_path_factory.mktemp("synth"), num_train=8, num_val=4, size=64, seed=0)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One torch thread per test: tiny tensors gain nothing from more, and on a shared CPU
    extra threads mostly wait for each other. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def evaluated_run(synth_root, tmp_path_factory) -> Path:
    """A run folder of 2 training iterations of the tiny GSAG hybrid (tests.helpers.configs) on
    `synth_root`, with `gsag eval`'s report of its best.pt in eval_best_val_whole/."""
    from gsag.cli import main
    from gsag.engine.train import train
    from tests.helpers.configs import tiny_config

    run_dir = tmp_path_factory.mktemp("evaluated_run") / "tiny-run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(tiny_config(synth_root, run_dir, "train.iters=2"), quiet=True)
        args = ["eval", str(run_dir / "best.pt"), "--quiet", "--workers", "0", "--threads", "1"]
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    return run_dir


@pytest.fixture(scope="session")
def pretrained(evaluated_run, tmp_path_factory) -> Path:
    """`evaluated_run` saved as a pretrained folder by `gsag.save_pretrained`."""
    from gsag.trained.save import save_pretrained

    return save_pretrained(evaluated_run, tmp_path_factory.mktemp("pretrained") / "tiny")


@pytest.fixture
def offline_cache(monkeypatch, tmp_path) -> Path:
    """An empty Hugging Face cache with HF_HUB_OFFLINE=1. huggingface_hub reads both variables
    when it is imported, so its constants are set here as the variables would have set them."""
    from huggingface_hub import constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def unreachable_hub(monkeypatch, tmp_path) -> str:
    """HF_ENDPOINT at a local port where nothing listens, network allowed, an empty cache;
    returns the endpoint. Connections are really attempted (and refused)."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as s:  # a free port, released again
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return endpoint
