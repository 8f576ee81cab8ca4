"""Fixtures of the model tests: an independent local-attention reference."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch


def _naive_local_attention(q, k, v, bias, ks):
    """Explicit loops over positions and neighbours; out-of-image neighbours are skipped."""
    b, h, hh, ww, dk = q.shape
    r = ks // 2
    out = q.new_zeros(b, h, hh, ww, v.shape[-1])
    for i in range(hh):
        for j in range(ww):
            logits, values = [], []
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    y, x = i + dy, j + dx
                    if 0 <= y < hh and 0 <= x < ww:
                        offset = (dy + r) * ks + (dx + r)
                        s = (q[:, :, i, j] * k[:, :, y, x]).sum(-1) / math.sqrt(dk)
                        logits.append(s + bias[:, offset])  # (B, h)
                        values.append(v[:, :, y, x])  # (B, h, dv)
            attn = torch.stack(logits, -1).softmax(-1)  # (B, h, n)
            out[:, :, i, j] = (attn[..., None] * torch.stack(values, 2)).sum(2)
    return out


@pytest.fixture(scope="session")
def naive_local_attention() -> Callable:
    """naive(q, k, v, rel_bias, kernel_size) -> (B, h, H, W, dv), one pixel at a time."""
    return _naive_local_attention
