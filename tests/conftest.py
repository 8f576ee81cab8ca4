"""Shared fixtures: a small generated dataset any test may use."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A generated context-benchmark VOC tree: 8 train + 4 val images of 64x64, seed 0."""
    from gsag.data.synth import generate

    return generate(tmp_path_factory.mktemp("synth"), num_train=8, num_val=4, size=64, seed=0)
