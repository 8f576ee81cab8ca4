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
