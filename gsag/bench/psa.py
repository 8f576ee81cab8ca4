"""Micro-benchmark of the PSA's local attention: each implementation, forward and forward +
backward, in ms and in effective GB/s against the bytes the op must move (`psa_bytes`), and
how far its output and gradients are from the float32 reference on the same inputs."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from gsag.models.local_attention import local_attention_reference, output_dtype
from gsag.models.local_attention_dispatch import local_attention

IMPLS = ("triton", "reference", "reference_compiled")  # the number a GPU session wants first


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


def _output_and_grads(run: Callable[[], Tensor], inputs: list[Tensor]) -> list[Tensor]:
    """[out, dq, dk, dv, d bias] of one call, in float32, for the loss sum(out)."""
    out = run()
    grads = torch.autograd.grad(out.float().sum(), inputs)
    return [t.detach().float() for t in (out, *grads)]


def _errors(got: list[Tensor], expected: list[Tensor]) -> dict[str, float]:
    """Relative (norm) error of the output and the largest one of the four gradients."""

    def rel(a: Tensor, b: Tensor) -> float:
        return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()

    pairs = list(zip(got, expected, strict=True))
    return {"out_rel_err": rel(*pairs[0]), "grad_rel_err": max(rel(a, b) for a, b in pairs[1:])}


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
    on_impl: Callable[[dict[str, dict[str, float]]], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Per implementation (`IMPLS`, in that order): median ms and GB/s of the forward (no grad)
    and of forward + backward, on CUDA the peak MiB of one forward + backward, and the relative
    errors of its output and gradients against `local_attention_reference` on the same inputs
    in float32. `on_impl` gets the rows so far after each implementation (to write them: a
    time limit keeps what finished). Defaults: the PSA of gsag_hybrid at 512x512 input (bf16
    q, k, v and output, as under autocast)."""
    from torch.utils import benchmark

    g = torch.Generator(device).manual_seed(0)
    shape = (batch, heads, *size, head_dim)  # (B, h, H, W, d)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, generator=g) for _ in range(3))
    bias = torch.zeros(heads, kernel_size**2, device=device)
    inputs = [t.requires_grad_(True) for t in (q, k, v, bias)]
    out_bytes = torch.empty((), dtype=output_dtype(q, k, v, bias)).element_size()
    moved = psa_bytes(batch, heads, size, head_dim, head_dim, q.element_size(), out_bytes)
    exact = [t.detach().float().requires_grad_(True) for t in inputs]
    qe, ke, ve, be = exact
    expected = _output_and_grads(
        lambda: local_attention_reference(qe, ke, ve, be, kernel_size), exact
    )

    def median_ms(fn) -> float:
        timer = benchmark.Timer("fn()", globals={"fn": fn})
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3

    result: dict[str, dict[str, float]] = {}
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
        row |= _errors(_output_and_grads(run, inputs), expected)
        with torch.no_grad():
            run()  # compiled: the no-grad graph is another compile
            row["forward_ms"] = median_ms(run)
        row["forward_backward_ms"] = median_ms(lambda run=run: run().float().sum().backward())
        row["forward_gbps"] = moved[0] / row["forward_ms"] / 1e6
        row["forward_backward_gbps"] = moved[1] / row["forward_backward_ms"] / 1e6
        result[impl] = row
        if on_impl is not None:
            on_impl(result)
    return result
