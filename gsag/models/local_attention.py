"""Exact k x k local (pointwise) attention with a learned relative-position bias per head: the
reference implementation, and what every implementation shares (shapes, dtypes, whether triton
is there, the switch that a failed kernel throws).

Every position attends to the k x k neighbourhood around it; neighbours outside the image are
masked out (-inf logit). Layout: q, k (B, h, H, W, dk); v (B, h, H, W, dv); rel_bias (h, k*k)
indexed by offset (dy + r) * k + (dx + r) with r = k // 2; output (B, h, H, W, dv).

Implementations (`IMPLS`; `gsag.models.local_attention_dispatch.local_attention` runs the one
asked for):
- "reference": a loop over the k*k offsets on a padded view (the readable definition and the
  CPU path; also what torch.compile, torch.export and ONNX export see);
- "triton": fused Triton kernels, forward and backward (CUDA; on CPU only under the Triton
  interpreter, `TRITON_INTERPRET=1`), in `gsag.models.local_attention_triton`, called through
  the custom ops of `gsag.models.local_attention_op`, which torch.compile keeps as one node;
- "auto": "triton" for float32, bfloat16 and float16 CUDA tensors when triton is installed,
  eager or compiled, unless the model is being exported (ONNX, torch.export) or a kernel
  already failed in this process; else "reference" (float64 included: the kernels compute in
  float32). A kernel that fails to compile or launch under "auto" gives one warning
  and the reference from then on; under "triton" it is an error (`kernel_failed`).
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

IMPLS = ("auto", "reference", "triton")
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what the kernels compute exactly
LOW_PRECISION = (torch.bfloat16, torch.float16)
REPORT = (
    "please report it to the gsag maintainers with this message and the output of "
    "`python -m torch.utils.collect_env`"
)
_failure: list[str] = []  # the first kernel failure of this process, if any


def kernel_failure() -> str | None:
    """The kernel failure that switched "auto" to the reference in this process, or None."""
    return _failure[0] if _failure else None


def kernel_failed(err: BaseException, fallback: bool) -> None:
    """Handle a Triton kernel that failed to compile or launch.

    With `fallback` ("auto"): remember it, warn once per process, return (the caller then runs
    the reference). Without (an explicit "triton"): raise a `GsagError` naming the failure.
    """
    from gsag.errors import GsagError

    what = f"{type(err).__module__}.{type(err).__name__}: {(str(err).strip() or '?').splitlines()[0][:300]}"
    if not fallback:
        raise GsagError(
            f"the Triton local-attention kernel failed ({what}); set attention_impl: auto or "
            f"reference to run without it, and {REPORT}"
        ) from err
    if not _failure:
        _failure.append(what)
        warnings.warn(
            f"the Triton local-attention kernel failed ({what}); running the reference "
            f"implementation for the rest of this process (slower, same results); {REPORT}",
            RuntimeWarning,
            stacklevel=2,
        )


def check_impl(impl: str) -> str:
    """Return `impl` if it names an implementation, else raise a one-line ValueError."""
    if impl not in IMPLS:
        raise ValueError(f"attention_impl={impl!r} is not valid; choose one of {', '.join(IMPLS)}")
    return impl


def _weights(q: Tensor, kp: Tensor, rel_bias: Tensor, kernel_size: int) -> Tensor:
    """Softmax weights (B, h, k*k, H, W) of scaled q against the padded keys kp; 0 outside."""
    ks, r = kernel_size, kernel_size // 2
    _, h, hh, ww, _ = q.shape
    inside = F.pad(q.new_ones(hh, ww, dtype=torch.bool), (r, r, r, r))  # (H + 2r, W + 2r)
    offsets = [(dy, dx) for dy in range(ks) for dx in range(ks)]
    logits = torch.stack(
        [(q * kp[:, :, dy : dy + hh, dx : dx + ww]).sum(-1) for dy, dx in offsets], dim=2
    )  # (B, h, k*k, H, W)
    valid = torch.stack([inside[dy : dy + hh, dx : dx + ww] for dy, dx in offsets])
    logits = logits + rel_bias.view(1, h, ks * ks, 1, 1)
    return logits.masked_fill(~valid, float("-inf")).softmax(dim=2)


def local_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int
) -> Tensor:
    """The shift loop: logits for each of the k*k offsets on a padded view, softmax, sum."""
    ks, r = kernel_size, kernel_size // 2
    hh, ww, dk = q.shape[2:]
    kp = F.pad(k, (0, 0, r, r, r, r))  # (B, h, H + 2r, W + 2r, dk)
    vp = F.pad(v, (0, 0, r, r, r, r))
    attn = _weights(q * dk**-0.5, kp, rel_bias, ks)  # (B, h, k*k, H, W)
    # accumulate in the wider of the two dtypes (softmax runs in float32 under autocast)
    out = v.new_zeros(v.shape, dtype=torch.promote_types(attn.dtype, v.dtype))
    for i in range(ks * ks):
        dy, dx = divmod(i, ks)
        out.addcmul_(attn[:, :, i, :, :, None], vp[:, :, dy : dy + hh, dx : dx + ww])
    return out  # (B, h, H, W, dv)


def reference_backward(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of `local_attention_reference` written out, without autograd (the custom op
    runs below autograd): dq, dk, dv (contiguous, inputs' dtypes) and d rel_bias (h, k*k).

    With p the weights and dp_o = dout . v_o: ds_o = p_o (dp_o - sum_o' p_o' dp_o'),
    dq = scale sum_o ds_o k_o, dk_o += ds_o scale q, dv_o += p_o dout, dbias_o = sum ds_o.
    """
    ks, r = kernel_size, kernel_size // 2
    hh, ww, dk = q.shape[2:]
    f = torch.promote_types(torch.float32, q.dtype)
    scale = dk**-0.5
    qs, kp, vp = (
        q.to(f) * scale,
        F.pad(k.to(f), (0, 0, r, r, r, r)),
        F.pad(v.to(f), (0, 0, r, r, r, r)),
    )
    do = dout.to(f)
    p = _weights(qs, kp, rel_bias.to(f), ks)  # (B, h, k*k, H, W)
    shifts = [(dy, dx) for dy in range(ks) for dx in range(ks)]
    dp = torch.stack([(do * vp[:, :, y : y + hh, x : x + ww]).sum(-1) for y, x in shifts], 2)
    ds = p * (dp - (p * dp).sum(2, keepdim=True))  # (B, h, k*k, H, W)
    dq, dkp, dvp = torch.zeros_like(qs), torch.zeros_like(kp), torch.zeros_like(vp)
    for i, (y, x) in enumerate(shifts):
        dq.addcmul_(ds[:, :, i, :, :, None], kp[:, :, y : y + hh, x : x + ww])
        dkp[:, :, y : y + hh, x : x + ww].addcmul_(ds[:, :, i, :, :, None], qs)
        dvp[:, :, y : y + hh, x : x + ww].addcmul_(p[:, :, i, :, :, None], do)
    crop = (slice(None), slice(None), slice(r, r + hh), slice(r, r + ww))
    return (
        (dq * scale).to(q.dtype).contiguous(),
        dkp[crop].to(k.dtype).contiguous(),  # qs carries the scale
        dvp[crop].to(v.dtype).contiguous(),
        ds.sum(dim=(0, 3, 4)).to(rel_bias.dtype),
    )


@functools.cache
def triton_available() -> bool:
    """Whether the optional `triton` package is importable."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def output_dtype(q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor) -> torch.dtype:
    """The dtype every implementation returns: q, k and v's when they share a 16-bit float
    dtype (as under autocast, whatever the bias's: the softmax statistics stay float32, the
    output is written at the inputs' precision, half the bytes of float32), else all four
    dtypes promoted (what the reference computes in)."""
    qkv = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    return qkv if qkv in LOW_PRECISION else torch.promote_types(qkv, rel_bias.dtype)


def new_output(q: Tensor, dv: int, dtype: torch.dtype) -> Tensor:
    """An empty output (B, h, H, W, dv) for q (B, h, H, W, dk), stored channel-first as
    (B, h, dv, H, W): the layout of the fused op's output, so that the head's
    `permute(0, 1, 4, 2, 3).reshape(B, h * dv, H, W)` after it is a view, not a copy."""
    b, nh, hh, ww, _ = q.shape
    return q.new_empty((b, nh, dv, hh, ww), dtype=dtype).permute(0, 1, 3, 4, 2)


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


def fits_kernels(q: Tensor) -> bool:
    """Whether the launch grid (batch x heads on axis 1, at most 65535) and the int32 pixel
    index (H x W < 2**31) of the kernels take q (B, h, H, W, dk)."""
    b, nh, hh, ww, _ = q.shape
    return b * nh <= 65535 and hh * ww < 2**31


def kernel_dtypes(*tensors: Tensor) -> bool:
    """Whether the kernels compute these inputs as the reference would (float64 they do not:
    they accumulate in float32)."""
    return all(t.dtype in KERNEL_DTYPES for t in tensors)


def kernel_device(q: Tensor) -> bool:
    """Whether q lives where the compiled Triton kernels run (CUDA)."""
    return q.is_cuda
