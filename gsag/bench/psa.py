"""Micro-benchmark of the PSA's local attention: each implementation, forward and forward +
backward, in ms and in effective GB/s against the bytes the op must move (`psa_bytes`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from gsag.models.local_attention import local_attention_reference, output_dtype
from gsag.models.local_attention_dispatch import local_attention

IMPLS = ("reference", "reference_compiled", "triton")


def psa_bytes(
    batch: int, heads: int, size: tuple[int, int], dk: int, dv: int, in_bytes: int,
    out_bytes: int,
) -> tuple[int, int]:  # fmt: skip
    """(forward, forward + backward) bytes the fused op must move at the least.

    Forward: read q, k, v once, write the output and a float32 log-sum-exp per pixel.
    Backward: read q, k, v, the output gradient, the output (for sum(dout * out)) and the
    log-sum-exp, write dq, dk, dv. The bias (h x k*k) is negligible; k does not enter.
    """
    n = batch * heads * size[0] * size[1]  # pixels of all heads
    qkv = n * (2 * dk + dv) * in_bytes
    forward = qkv + n * dv * out_bytes + n * 4
    backward = qkv + 2 * n * dv * out_bytes + n * 4 + qkv
    return forward, forward + backward


def _call(impl: str, kernel_size: int, backend: str) -> Callable:
    if impl == "reference_compiled":
        compiled = torch.compile(local_attention_reference, backend=backend, dynamic=False)
        return lambda q, k, v, b: compiled(q, k, v, b, kernel_size)
    return lambda q, k, v, b: local_attention(q, k, v, b, kernel_size, impl)


def benchmark_local_attention(
    batch: int = 8,
    heads: int = 8,
    size: tuple[int, int] = (64, 64),
    head_dim: int = 32,
    kernel_size: int = 7,
    dtype: torch.dtype = torch.bfloat16,
    device: str = "cuda",
    impls: tuple[str, ...] = IMPLS,
    min_run_time: float = 1.0,
    compile_backend: str = "inductor",
) -> dict[str, dict[str, float]]:
    """Per implementation (`IMPLS`): median ms and GB/s of the forward (no grad) and of forward +
    backward, and on CUDA the peak MiB of one forward + backward. Defaults: the PSA of
    gsag_hybrid at 512x512 input (bf16 q, k, v; float32 output, as under autocast)."""
    from torch.utils import benchmark

    g = torch.Generator(device).manual_seed(0)
    shape = (batch, heads, *size, head_dim)  # (B, h, H, W, d)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, generator=g) for _ in range(3))
    bias = torch.zeros(heads, kernel_size**2, device=device)
    for t in (q, k, v, bias):
        t.requires_grad_(True)
    out_bytes = torch.empty((), dtype=output_dtype(q, k, v, bias)).element_size()
    moved = psa_bytes(batch, heads, size, head_dim, head_dim, q.element_size(), out_bytes)

    def median_ms(fn) -> float:
        timer = benchmark.Timer("fn()", globals={"fn": fn})
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3

    result = {}
    for impl in impls:
        run = functools.partial(_call(impl, kernel_size, compile_backend), q, k, v, bias)
        row = {}
        if q.is_cuda:  # also the warm-up (Triton compiles on the first call)
            torch.cuda.reset_peak_memory_stats(q.device)
            base = torch.cuda.memory_allocated(q.device)
            run().float().sum().backward()
            row["peak_mib"] = (torch.cuda.max_memory_allocated(q.device) - base) / 2**20
        else:
            run().float().sum().backward()  # warm-up (compiles)
        with torch.no_grad():
            run()  # compiled: the no-grad graph is another compile
            row["forward_ms"] = median_ms(run)
        row["forward_backward_ms"] = median_ms(lambda run=run: run().float().sum().backward())
        row["forward_gbps"] = moved[0] / row["forward_ms"] / 1e6
        row["forward_backward_gbps"] = moved[1] / row["forward_backward_ms"] / 1e6
        result[impl] = row
    return result
