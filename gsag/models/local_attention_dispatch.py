"""`local_attention`: the one entry point of the k x k local attention, which runs the
implementation asked for (`IMPLS` in `gsag.models.local_attention`).

- "reference": the shift loop of `gsag.models.local_attention`;
- "triton": the fused kernels, through the custom ops of `gsag.models.local_attention_op`;
- "auto": "triton" for float32, bfloat16 and float16 CUDA tensors when triton is installed,
  unless the model is being exported or a kernel already failed in this process; else
  "reference".

The custom ops are imported on the first call that runs them, so that a process that never runs
the kernels (any CPU run) does not register them.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from gsag.models import local_attention as la


def _exporting() -> bool:
    """True while ONNX export, torch.export or jit tracing records the model: exported files
    hold the reference (plain aten ops), never the custom op."""
    is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)  # torch >= 2.5
    return (
        is_exporting() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
        or torch.jit.is_scripting()
    )  # fmt: skip


def resolve_impl(impl: str, q: Tensor, *others: Tensor) -> str:
    """The implementation "auto" stands for with inputs q (and k, v, rel_bias: `others`);
    others are returned as given."""
    if la.check_impl(impl) != "auto":
        return impl
    if (
        la.kernel_device(q)
        and la.triton_available()
        and la.kernel_failure() is None
        and not _exporting()
    ):
        return "triton" if la.fits_kernels(q) and la.kernel_dtypes(q, *others) else "reference"
    return "reference"


def impl_problem(impl: str, device: torch.device | str) -> str | None:
    """Why `attention_impl=impl` cannot run on `device` (checked before any work: the triton
    kernels need CUDA, or `TRITON_INTERPRET=1`, and the triton package), or None."""
    if impl != "triton":
        return None
    if not la.triton_available():
        return "needs the triton package (pip install triton); use auto or reference"
    kind = torch.device(device).type
    if kind != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return (
            f"runs only on CUDA, and this run is on {kind}; use auto (the kernels on CUDA, "
            "the reference elsewhere, the same results) or reference"
        )
    return None


def local_attention(
    q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int, impl: str = "auto"
) -> Tensor:
    """Exact k x k local attention; `impl` is one of `gsag.models.local_attention.IMPLS` (the
    module docstring says what each runs). The output (B, h, H, W, dv) is in `output_dtype`
    whichever implementation runs."""
    resolved = resolve_impl(impl, q, k, v, rel_bias)
    if resolved == "triton" and impl == "auto":
        la.check_inputs(q, k, v, rel_bias, kernel_size)
        from gsag.models.local_attention_op import fused_local_attention

        return fused_local_attention(q, k, v, rel_bias, kernel_size, fallback=True)
    if resolved == "triton":
        return local_attention_triton(q, k, v, rel_bias, kernel_size)
    out = la.local_attention_reference(q, k, v, rel_bias, kernel_size)
    return out.to(la.output_dtype(q, k, v, rel_bias))  # no copy unless 16-bit inputs widened it


def local_attention_triton(
    q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int
) -> Tensor:
    """The fused Triton kernels (forward and backward), same result as the reference.

    Runs on CUDA tensors, or on CPU tensors when `TRITON_INTERPRET=1` was set before the first
    call (slow; for tests). Accumulates in float32 for float32, bfloat16 and float16 inputs;
    float64 inputs are an error (the reference computes them in float64).
    """
    la.check_inputs(q, k, v, rel_bias, kernel_size)
    if not la.kernel_dtypes(q, k, v, rel_bias):
        raise ValueError(
            f"attention_impl='triton' computes in float32 and takes float32, bfloat16 or float16 "
            f"inputs, got {', '.join(sorted({str(t.dtype) for t in (q, k, v, rel_bias)}))}; use "
            "attention_impl='reference' (or 'auto', which picks it for these)"
        )
    if not la.triton_available():
        raise RuntimeError(
            "attention_impl='triton' needs the triton package; install it (pip install triton) "
            "or use attention_impl='reference'"
        )
    if not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"attention_impl='triton' needs CUDA tensors, got {q.device.type} tensors; use "
            "attention_impl='reference' (or set TRITON_INTERPRET=1 to emulate it, slowly)"
        )
    if not la.fits_kernels(q):
        raise ValueError(
            f"local attention of {q.shape[0]} x {q.shape[1]} (batch x heads) maps of "
            f"{q.shape[2]}x{q.shape[3]} is too large for the Triton kernels (batch x heads <= "
            "65535, H x W < 2**31); use attention_impl='reference'"
        )
    from gsag.models.local_attention_op import fused_local_attention

    return fused_local_attention(q, k, v, rel_bias, kernel_size, fallback=False)
