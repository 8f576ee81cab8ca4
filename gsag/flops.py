"""Parameter and FLOP counting for `gsag models` and `gsag bench`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, cast

import torch
from torch import nn


class _ExtraFlops(Protocol):
    """A module that counts the FLOPs `FlopCounterMode` misses (see `count_flops`)."""

    def extra_flops(self, inputs: tuple, output: Any) -> int: ...


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _shape(x) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(x)


def _sdpa_flops(query, key, value, *args, **kwargs) -> int:
    """2 * B * h * N * M * (d_qk + d_v): the two matrix products of attention."""
    q, k, v = _shape(query), _shape(key), _shape(value)
    batch = math.prod(q[:-2])
    return 2 * batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _sdpa_mapping() -> dict:
    """Attention ops that `FlopCounterMode` does not count in this torch version."""
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten
    names = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math")
    mapping = {}
    for name in names:
        op = getattr(aten, name, None)
        if op is not None and op not in flop_registry:
            mapping[op] = _sdpa_flops
    return mapping


@torch.no_grad()
def count_gflops(
    model: nn.Module, input_size: int | Sequence[int] = (512, 512), batch_size: int = 1
) -> float:
    """Forward GFLOPs (1 multiply-add = 2 FLOPs) of `model` in eval mode on a zero image.

    Counted with `torch.utils.flop_counter.FlopCounterMode` (matrix products and convolutions).
    Two kinds of work it does not see are added analytically: the fused CPU attention kernel of
    `scaled_dot_product_attention` (reported as 0 FLOPs; we add 2*B*h*N*M*(d_qk + d_v)) and
    modules that define `extra_flops(inputs, output)` (the local attention's element-wise
    products). Element-wise ops (BN, ReLU, softmax, resize) are not counted, as is usual.

    Args:
        model: any module taking a (B, 3, H, W) tensor.
        input_size: H and W (an int means square).
        batch_size: B.
    """
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(batch_size, 3, h, w, device=device)
    extra = 0

    def hook(module: nn.Module, inputs: tuple, output) -> None:
        nonlocal extra
        extra += cast(_ExtraFlops, module).extra_flops(inputs, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if hasattr(m, "extra_flops")]
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=_sdpa_mapping()) as counter:
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return (counter.get_total_flops() + extra) / 1e9
