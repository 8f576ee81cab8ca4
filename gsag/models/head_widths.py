"""The GSAG head's widths follow the backbone (docs/model.md, "Head widths: the rule").

The rule, for the widths a model is not given:

- head width d (`head_channels`): half the widest backbone level, rounded down to a power of
  two, at least 128 and at most 512: ResNet-50/101 (2048 channels) keep 512, ResNet-18/34 (512)
  and ConvNeXt-T / Swin-T (768) get 256;
- attention width d_k = d_v (`key_channels`): d / 2, at most 128;
- heads (`num_heads`): d_k / 32, so every head is 32 wide, the size the fused CPU attention
  kernel runs fastest at; at least 1, and always a divisor of d_k.

Each width given is kept and the ones after it follow from it (a given d sets d_k, a given d_k
sets the heads). Before the rule (until 2026-12) every backbone got `FIXED_WIDTHS`; a stored
model whose arguments lack a width was built with those (`legacy_widths`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

WIDTH_OPTIONS = ("head_channels", "key_channels", "num_heads")
#: The widths of every GSAG head before the rule: what stored arguments without them mean.
FIXED_WIDTHS = {"head_channels": 512, "key_channels": 256, "num_heads": 8}
MIN_HEAD, MAX_HEAD = 128, 512
MAX_KEY = 128
HEAD_DIM = 32


def head_widths(
    in_channels: Sequence[int],
    head_channels: int | None = None,
    key_channels: int | None = None,
    num_heads: int | None = None,
) -> dict[str, int]:
    """{head_channels, key_channels, num_heads}: the given ones, the rule's for the others."""
    if head_channels is None:
        half = max(max(in_channels) // 2, 1)
        head_channels = min(max(1 << (half.bit_length() - 1), MIN_HEAD), MAX_HEAD)
    if key_channels is None:
        key_channels = max(min(head_channels // 2, MAX_KEY), 1)
    if num_heads is None:
        num_heads = max(key_channels // HEAD_DIM, 1)
        while key_channels % num_heads:
            num_heads -= 1
    return {"head_channels": head_channels, "key_channels": key_channels, "num_heads": num_heads}


def legacy_widths(args: Mapping[str, Any]) -> dict[str, Any]:
    """Stored `create_model` arguments of a GSAG model with the widths it was built with:
    `FIXED_WIDTHS` for those missing (models stored since the rule carry all three)."""
    return {**FIXED_WIDTHS, **args}
