"""Image sizes as configs and options give them: one side, or [height, width]."""

from __future__ import annotations

from collections.abc import Sequence


def pair(size: int | Sequence[int]) -> tuple[int, int]:
    """An int, or a one- or two-element sequence, as (height, width)."""
    if isinstance(size, int):
        return (size, size)
    if len(size) == 1:
        return (int(size[0]), int(size[0]))
    height, width = size
    return (int(height), int(width))
