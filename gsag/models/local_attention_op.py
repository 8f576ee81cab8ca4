"""The fused local attention as torch custom ops, so torch.compile keeps the Triton kernels.

- `gsag::local_attention_fwd(q, k, v, rel_bias, kernel_size, out_dtype, fallback)`
  -> (out (B, h, H, W, dv) stored channel-first (`local_attention.new_output`),
  lse (B * h, H * W) float32)
- `gsag::local_attention_bwd(dout, q, k, v, rel_bias, out, lse, kernel_size, fallback)`
  -> (dq, dk, dv, d rel_bias)

Each has a fake implementation (shapes only, for tracing), and the forward has an autograd
formula that calls the backward op. Compiled graphs hold them as single nodes, and inductor
calls them as opaque kernels.

The implementations run the Triton kernels on CUDA tensors (and on CPU tensors under
`TRITON_INTERPRET=1`), else the reference: `local_attention_reference` forward, and its
gradients written out (`reference_backward`). If a kernel fails to compile or launch, `fallback`
decides: True (`attention_impl: auto`) warns once, runs the reference and keeps to it for the
rest of the process (`gsag.models.local_attention.kernel_failure`); False (an explicit
`triton`) raises a `GsagError` naming the failure.
"""

# no `from __future__ import annotations`: torch 2.4's custom_op reads the annotations as types
import os

import torch
from torch import Tensor

from gsag.models import local_attention as la

DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.bfloat16, torch.float16,
                                                     torch.float64)}  # fmt: skip


def _use_kernels(q: Tensor) -> bool:
    """Whether the Triton kernels run on q's device (and have not failed in this process)."""
    on_device = la.kernel_device(q) or os.environ.get("TRITON_INTERPRET") == "1"
    return on_device and la.triton_available() and la.kernel_failure() is None


@torch.library.custom_op("gsag::local_attention_fwd", mutates_args=())
def local_attention_fwd(
    q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int, out_dtype: str,
    fallback: bool,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """out (B, h, H, W, dv) in `out_dtype`, stored channel-first, and the kernels' log-sum-exp
    (B * h, H * W)."""
    if _use_kernels(q):
        try:
            from gsag.models.local_attention_triton import forward

            return forward(q, k, v, rel_bias, kernel_size, DTYPES[out_dtype])
        except Exception as err:  # Triton's errors derive from Exception only
            la.kernel_failed(err, fallback)
    out = la.new_output(q, v.shape[-1], DTYPES[out_dtype])
    out.copy_(la.local_attention_reference(q, k, v, rel_bias, kernel_size))
    b, nh, hh, ww, _ = q.shape
    return out, q.new_zeros((b * nh, hh * ww), dtype=torch.float32)


@local_attention_fwd.register_fake
def _fwd_fake(q, k, v, rel_bias, kernel_size, out_dtype, fallback):
    b, nh, hh, ww, _ = q.shape
    out = la.new_output(q, v.shape[-1], DTYPES[out_dtype])
    return out, q.new_empty((b * nh, hh * ww), dtype=torch.float32)


@torch.library.custom_op("gsag::local_attention_bwd", mutates_args=())
def local_attention_bwd(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, out: Tensor, lse: Tensor,
    kernel_size: int, fallback: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """dq, dk, dv (contiguous, in the inputs' dtypes) and d rel_bias (h, k*k)."""
    if _use_kernels(q):
        try:
            from gsag.models.local_attention_triton import backward

            return backward(dout, q, k, v, rel_bias, out, lse, kernel_size)
        except Exception as err:
            la.kernel_failed(err, fallback)
    return la.reference_backward(dout, q, k, v, rel_bias, kernel_size)


@local_attention_bwd.register_fake
def _bwd_fake(dout, q, k, v, rel_bias, out, lse, kernel_size, fallback):
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape),
            rel_bias.new_empty(rel_bias.shape))  # fmt: skip


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, rel_bias, kernel_size, _, fallback = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, rel_bias, out, lse)
    ctx.kernel_size, ctx.fallback = kernel_size, fallback


def _backward(ctx, dout, _dlse):
    q, k, v, rel_bias, out, lse = ctx.saved_tensors
    grads = local_attention_bwd(dout, q, k, v, rel_bias, out, lse, ctx.kernel_size, ctx.fallback)
    return (*grads, None, None, None)


local_attention_fwd.register_autograd(_backward, setup_context=_setup_context)


def fused_local_attention(
    q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int, fallback: bool
) -> Tensor:
    """The op's output (B, h, H, W, dv), stored channel-first, in `output_dtype`."""
    out_dtype = str(la.output_dtype(q, k, v, rel_bias)).removeprefix("torch.")
    return local_attention_fwd(q, k, v, rel_bias, kernel_size, out_dtype, fallback)[0]
