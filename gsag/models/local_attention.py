"""Exact k x k local (pointwise) attention with a learned relative-position bias per head.

Every position attends to the k x k neighbourhood around it; neighbours outside the image are
masked out (-inf logit). Layout: q, k (B, h, H, W, dk); v (B, h, H, W, dv); rel_bias (h, k*k)
indexed by offset (dy + r) * k + (dx + r) with r = k // 2; output (B, h, H, W, dv).

Implementations (`IMPLS`):
- "reference": a loop over the k*k offsets on a padded view (the readable definition and the
  CPU path; also what torch.compile, torch.export and ONNX export see);
- "triton": fused Triton kernels, forward and backward (CUDA; on CPU only under the Triton
  interpreter, `TRITON_INTERPRET=1`), in `gsag.models.local_attention_triton`;
- "auto": "triton" for CUDA tensors in eager mode when triton is installed, else "reference".
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import Tensor

IMPLS = ("auto", "reference", "triton")


def check_impl(impl: str) -> str:
    """Return `impl` if it names an implementation, else raise a one-line ValueError."""
    if impl not in IMPLS:
        raise ValueError(f"attention_impl={impl!r} is not valid; choose one of {', '.join(IMPLS)}")
    return impl


def local_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int
) -> Tensor:
    """The shift loop: logits for each of the k*k offsets on a padded view, softmax, sum."""
    ks, r = kernel_size, kernel_size // 2
    _, h, hh, ww, dk = q.shape
    q = q * dk**-0.5
    kp = F.pad(k, (0, 0, r, r, r, r))  # (B, h, H + 2r, W + 2r, dk)
    vp = F.pad(v, (0, 0, r, r, r, r))
    inside = F.pad(q.new_ones(hh, ww, dtype=torch.bool), (r, r, r, r))  # (H + 2r, W + 2r)
    offsets = [(dy, dx) for dy in range(ks) for dx in range(ks)]
    logits = torch.stack(
        [(q * kp[:, :, dy : dy + hh, dx : dx + ww]).sum(-1) for dy, dx in offsets], dim=2
    )  # (B, h, k*k, H, W)
    valid = torch.stack([inside[dy : dy + hh, dx : dx + ww] for dy, dx in offsets])
    logits = logits + rel_bias.view(1, h, ks * ks, 1, 1)
    attn = logits.masked_fill(~valid, float("-inf")).softmax(dim=2)  # (B, h, k*k, H, W)
    # accumulate in the wider of the two dtypes (softmax runs in float32 under autocast)
    out = v.new_zeros(v.shape, dtype=torch.promote_types(attn.dtype, v.dtype))
    for i, (dy, dx) in enumerate(offsets):
        out.addcmul_(attn[:, :, i, :, :, None], vp[:, :, dy : dy + hh, dx : dx + ww])
    return out  # (B, h, H, W, dv)


@functools.cache
def triton_available() -> bool:
    """Whether the optional `triton` package is importable."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def output_dtype(q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor) -> torch.dtype:
    """The dtype the reference returns: softmax dtype promoted with v's.

    CUDA autocast runs the logits' sum and the softmax in float32; CPU autocast does not.
    """
    attn = torch.promote_types(torch.promote_types(q.dtype, k.dtype), rel_bias.dtype)
    if q.is_cuda and torch.is_autocast_enabled("cuda"):
        attn = torch.float32
    return torch.promote_types(attn, v.dtype)


def check_inputs(q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int) -> None:
    """Raise a one-line ValueError unless the shapes and devices fit together (the kernels
    index memory directly, so a mismatch would read out of bounds instead of failing)."""
    ok = q.dim() == 5 and k.shape == q.shape and v.dim() == 5 and v.shape[:4] == q.shape[:4]
    ok = ok and kernel_size > 0 and kernel_size % 2 == 1
    ok = ok and tuple(rel_bias.shape) == (q.shape[1], kernel_size**2)
    if not ok or len({t.device for t in (q, k, v, rel_bias)}) != 1:
        raise ValueError(
            f"local attention inputs do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, "
            f"v {tuple(v.shape)}, rel_bias {tuple(rel_bias.shape)}, kernel_size {kernel_size} "
            f"on {q.device}, {k.device}, {v.device}, {rel_bias.device}; expected q and k "
            "(B, h, H, W, dk), v (B, h, H, W, dv), rel_bias (h, k*k) with k odd, one device"
        )


def local_attention_triton(
    q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int
) -> Tensor:
    """The fused Triton kernels (forward and backward), same result as the reference.

    Runs on CUDA tensors, or on CPU tensors when `TRITON_INTERPRET=1` was set before the first
    call (slow; for tests). Accumulates in float32 for float32, bfloat16 and float16 inputs.
    """
    check_inputs(q, k, v, rel_bias, kernel_size)
    if not triton_available():
        raise RuntimeError(
            "attention_impl='triton' needs the triton package; install it (pip install triton) "
            "or use attention_impl='reference'"
        )
    if not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"attention_impl='triton' needs CUDA tensors, got {q.device.type} tensors; use "
            "attention_impl='reference' (or set TRITON_INTERPRET=1 to emulate it, slowly)"
        )
    from gsag.models.local_attention_triton import triton_local_attention

    return triton_local_attention(q, k, v, rel_bias, kernel_size, output_dtype(q, k, v, rel_bias))


def _tracing() -> bool:
    """True while torch.compile / torch.export / jit tracing records the model."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()


def resolve_impl(impl: str, q: Tensor) -> str:
    """The implementation "auto" stands for with these inputs (others are returned as given)."""
    if check_impl(impl) != "auto":
        return impl
    # plain tensors only: export and compile trace with fake tensor subclasses
    if not _tracing() and type(q) is Tensor and q.is_cuda and triton_available():
        return "triton"
    return "reference"


def local_attention(
    q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int, impl: str = "auto"
) -> Tensor:
    """Exact k x k local attention; `impl` is one of `IMPLS` (module docstring)."""
    if resolve_impl(impl, q) == "triton":
        return local_attention_triton(q, k, v, rel_bias, kernel_size)
    return local_attention_reference(q, k, v, rel_bias, kernel_size)


def benchmark_local_attention(
    batch: int = 8,
    heads: int = 8,
    size: tuple[int, int] = (64, 64),
    head_dim: int = 32,
    kernel_size: int = 7,
    dtype: torch.dtype = torch.bfloat16,
    device: str = "cuda",
    impls: tuple[str, ...] = ("reference", "triton"),
    min_run_time: float = 1.0,
) -> dict[str, dict[str, float]]:
    """Per implementation: median ms of the forward (no grad) and of forward + backward, and on
    CUDA the peak MiB of one forward + backward. Defaults: the PSA of gsag_hybrid at 512x512."""
    from torch.utils import benchmark

    g = torch.Generator(device).manual_seed(0)
    shape = (batch, heads, *size, head_dim)  # (B, h, H, W, d)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, generator=g) for _ in range(3))
    bias = torch.zeros(heads, kernel_size**2, device=device)
    for t in (q, k, v, bias):
        t.requires_grad_(True)

    def median_ms(fn) -> float:
        timer = benchmark.Timer("fn()", globals={"fn": fn})
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3

    result = {}
    for impl in impls:
        run = functools.partial(local_attention, q, k, v, bias, kernel_size, impl)
        row = {}
        if q.is_cuda:  # also the warm-up (Triton compiles on the first call)
            torch.cuda.reset_peak_memory_stats(q.device)
            base = torch.cuda.memory_allocated(q.device)
            run().float().sum().backward()
            row["peak_mib"] = (torch.cuda.max_memory_allocated(q.device) - base) / 2**20
        with torch.no_grad():
            row["forward_ms"] = median_ms(run)
        row["forward_backward_ms"] = median_ms(lambda run=run: run().float().sum().backward())
        result[impl] = row
    return result
