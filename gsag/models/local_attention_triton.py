"""Triton kernels of the k x k local attention (see `gsag.models.local_attention`).

Imported lazily: only `local_attention_triton` imports this module, so gsag imports without
triton, and `TRITON_INTERPRET=1` set before the first call still selects the interpreter.

One program handles one (batch, head) pair and a block of 16 to 64 pixels (fewer for wide
heads, to keep the (pixels, head size) tiles in registers). Rows of q, k, v, dout
are read through their (b, h, y, x) strides, so the permuted views the key layer returns need
no copy. Softmax statistics are float32; the forward pass keeps the log-sum-exp per pixel.
- forward: an online softmax over the k*k neighbours, one neighbour row of k and v at a time;
- backward, query side: dq, and per program the sum over its pixels of the bias gradient
  (summed over programs with torch afterwards: deterministic, no atomics);
- backward, key side: dk and dv, by visiting for each key the queries that see it.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

NEG_BIG = tl.constexpr(-1.0e30)  # initial running max: finite, so exp(m - m_new) is never NaN


@triton.jit
def _rows(ptr, base, sy, sx, y, x, cols, row_mask, col_mask):
    """Load (BLOCK, D) rows at pixels (y, x) as float32; masked entries are 0."""
    offs = base + (y * sy + x * sx)[:, None] + cols[None, :]
    return tl.load(ptr + offs, mask=row_mask[:, None] & col_mask[None, :], other=0.0).to(tl.float32)


@triton.jit
def _fwd_kernel(
    Q, K, V, BIAS, OUT, LSE,
    sqb, sqh, sqy, sqx, skb, skh, sky, skx, svb, svh, svy, svx,
    NH, H, W, DK, DV, scale,
    KS: tl.constexpr, BLOCK: tl.constexpr, DKP: tl.constexpr, DVP: tl.constexpr,
):  # fmt: skip
    bh, blk = tl.program_id(0), tl.program_id(1)
    b, head = (bh // NH).to(tl.int64), bh % NH
    pix = blk * BLOCK + tl.arange(0, BLOCK)
    inside = pix < H * W
    y, x = pix // W, pix % W
    ck, cv = tl.arange(0, DKP), tl.arange(0, DVP)
    q = _rows(Q, b * sqb + head * sqh, sqy, sqx, y, x, ck, inside, ck < DK) * scale
    m = tl.full((BLOCK,), NEG_BIG, tl.float32)
    den = tl.zeros((BLOCK,), tl.float32)
    acc = tl.zeros((BLOCK, DVP), tl.float32)
    for o in range(KS * KS):
        ny, nx = y + o // KS - KS // 2, x + o % KS - KS // 2
        valid = inside & (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
        kt = _rows(K, b * skb + head * skh, sky, skx, ny, nx, ck, valid, ck < DK)
        s = tl.sum(q * kt, axis=1) + tl.load(BIAS + head * KS * KS + o).to(tl.float32)
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m, s)
        alpha, p = tl.exp(m - m_new), tl.exp(s - m_new)
        vt = _rows(V, b * svb + head * svh, svy, svx, ny, nx, cv, valid, cv < DV)
        acc = acc * alpha[:, None] + p[:, None] * vt
        den = den * alpha + p
        m = m_new
    den = tl.where(inside, den, 1.0)
    out_offs = (bh.to(tl.int64) * H * W + pix)[:, None] * DV + cv[None, :]
    tl.store(OUT + out_offs, acc / den[:, None], mask=inside[:, None] & (cv < DV)[None, :])
    tl.store(LSE + bh.to(tl.int64) * H * W + pix, m + tl.log(den), mask=inside)


@triton.jit
def _bwd_query_kernel(
    Q, K, V, BIAS, DOUT, LSE, DELTA, DQ, DBIAS,
    sqb, sqh, sqy, sqx, skb, skh, sky, skx, svb, svh, svy, svx, sob, soh, soy, sox,
    NH, H, W, DK, DV, scale,
    KS: tl.constexpr, BLOCK: tl.constexpr, DKP: tl.constexpr, DVP: tl.constexpr,
):  # fmt: skip
    bh, blk = tl.program_id(0), tl.program_id(1)
    b, head = (bh // NH).to(tl.int64), bh % NH
    pix = blk * BLOCK + tl.arange(0, BLOCK)
    inside = pix < H * W
    y, x = pix // W, pix % W
    ck, cv = tl.arange(0, DKP), tl.arange(0, DVP)
    q = _rows(Q, b * sqb + head * sqh, sqy, sqx, y, x, ck, inside, ck < DK) * scale
    do = _rows(DOUT, b * sob + head * soh, soy, sox, y, x, cv, inside, cv < DV)
    stat = bh.to(tl.int64) * H * W + pix
    lse = tl.load(LSE + stat, mask=inside, other=0.0)
    delta = tl.load(DELTA + stat, mask=inside, other=0.0)
    dq = tl.zeros((BLOCK, DKP), tl.float32)
    dbias = DBIAS + (bh.to(tl.int64) * tl.num_programs(1) + blk) * KS * KS
    for o in range(KS * KS):
        ny, nx = y + o // KS - KS // 2, x + o % KS - KS // 2
        valid = inside & (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
        kt = _rows(K, b * skb + head * skh, sky, skx, ny, nx, ck, valid, ck < DK)
        vt = _rows(V, b * svb + head * svh, svy, svx, ny, nx, cv, valid, cv < DV)
        s = tl.sum(q * kt, axis=1) + tl.load(BIAS + head * KS * KS + o).to(tl.float32)
        p = tl.where(valid, tl.exp(s - lse), 0.0)
        ds = p * (tl.sum(do * vt, axis=1) - delta)  # d loss / d logit
        dq += ds[:, None] * kt
        tl.store(dbias + o, tl.sum(ds, axis=0))
    dq_offs = (bh.to(tl.int64) * H * W + pix)[:, None] * DK + ck[None, :]
    tl.store(DQ + dq_offs, dq * scale, mask=inside[:, None] & (ck < DK)[None, :])


@triton.jit
def _bwd_key_kernel(
    Q, K, V, BIAS, DOUT, LSE, DELTA, DK_, DV_,
    sqb, sqh, sqy, sqx, skb, skh, sky, skx, svb, svh, svy, svx, sob, soh, soy, sox,
    NH, H, W, DK, DV, scale,
    KS: tl.constexpr, BLOCK: tl.constexpr, DKP: tl.constexpr, DVP: tl.constexpr,
):  # fmt: skip
    bh, blk = tl.program_id(0), tl.program_id(1)
    b, head = (bh // NH).to(tl.int64), bh % NH
    pix = blk * BLOCK + tl.arange(0, BLOCK)
    inside = pix < H * W
    y, x = pix // W, pix % W
    ck, cv = tl.arange(0, DKP), tl.arange(0, DVP)
    kt = _rows(K, b * skb + head * skh, sky, skx, y, x, ck, inside, ck < DK)
    vt = _rows(V, b * svb + head * svh, svy, svx, y, x, cv, inside, cv < DV)
    dk = tl.zeros((BLOCK, DKP), tl.float32)
    dv = tl.zeros((BLOCK, DVP), tl.float32)
    for o in range(KS * KS):
        # the query at (py, px) sees this key through offset o
        py, px = y - (o // KS - KS // 2), x - (o % KS - KS // 2)
        valid = inside & (py >= 0) & (py < H) & (px >= 0) & (px < W)
        q = _rows(Q, b * sqb + head * sqh, sqy, sqx, py, px, ck, valid, ck < DK) * scale
        do = _rows(DOUT, b * sob + head * soh, soy, sox, py, px, cv, valid, cv < DV)
        stat = bh.to(tl.int64) * H * W + py * W + px
        lse = tl.load(LSE + stat, mask=valid, other=0.0)
        delta = tl.load(DELTA + stat, mask=valid, other=0.0)
        s = tl.sum(q * kt, axis=1) + tl.load(BIAS + head * KS * KS + o).to(tl.float32)
        p = tl.where(valid, tl.exp(s - lse), 0.0)
        ds = p * (tl.sum(do * vt, axis=1) - delta)
        dk += ds[:, None] * q  # q already carries the scale
        dv += p[:, None] * do
    row = (bh.to(tl.int64) * H * W + pix)[:, None]
    tl.store(DK_ + row * DK + ck[None, :], dk, mask=inside[:, None] & (ck < DK)[None, :])
    tl.store(DV_ + row * DV + cv[None, :], dv, mask=inside[:, None] & (cv < DV)[None, :])


def _strided(x: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
    """x (B, h, H, W, d) with a unit last stride, and its (b, h, y, x) strides."""
    x = x if x.stride(-1) == 1 else x.contiguous()
    s = x.stride()
    return x, (s[0], s[1], s[2], s[3])


def _meta(q: Tensor, v: Tensor, kernel_size: int) -> dict:
    """Shape arguments and compile-time constants shared by the three kernels."""
    _, nh, hh, ww, dk = q.shape
    dv = v.shape[-1]
    dkp, dvp = triton.next_power_of_2(dk), triton.next_power_of_2(dv)
    block = max(16, min(64, 2048 // max(dkp, dvp)))  # pixels per program
    return dict(
        NH=nh, H=hh, W=ww, DK=dk, DV=dv, scale=dk**-0.5, KS=kernel_size, BLOCK=block,
        DKP=dkp, DVP=dvp,
    )  # fmt: skip


def _grid(q: Tensor, meta: dict) -> tuple[int, int]:
    """(B * h, pixel blocks)."""
    b, nh, hh, ww, _ = q.shape
    return b * nh, triton.cdiv(hh * ww, meta["BLOCK"])


def _on(x: Tensor) -> contextlib.AbstractContextManager:
    """Make x's GPU the current one: Triton launches on the current device."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


class _LocalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, rel_bias, kernel_size, out_dtype):
        (q, sq), (k, sk), (v, sv) = _strided(q), _strided(k), _strided(v)
        bias = rel_bias.contiguous()
        b, nh, hh, ww, _ = q.shape
        out = q.new_empty((*q.shape[:4], v.shape[-1]), dtype=out_dtype)  # (B, h, H, W, dv)
        lse = q.new_empty((b * nh, hh * ww), dtype=torch.float32)
        meta = _meta(q, v, kernel_size)
        grid = _grid(q, meta)
        with _on(q):
            _fwd_kernel[grid](q, k, v, bias, out, lse, *sq, *sk, *sv, **meta)
        ctx.save_for_backward(q, k, v, bias, out, lse)
        ctx.kernel_size = kernel_size
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        q, k, v, bias, out, lse = ctx.saved_tensors
        (dout, so), sq, sk, sv = _strided(dout), q.stride()[:4], k.stride()[:4], v.stride()[:4]
        b, nh, hh, ww, _ = q.shape
        delta = (dout.float() * out.float()).sum(-1).reshape(b * nh, hh * ww).contiguous()
        meta = _meta(q, v, ctx.kernel_size)
        grid = _grid(q, meta)
        dq, dk, dv = q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)
        partial = q.new_empty((b, nh, grid[1], bias.shape[1]), dtype=torch.float32)
        common = (*sq, *sk, *sv, *so)
        with _on(q):
            _bwd_query_kernel[grid](q, k, v, bias, dout, lse, delta, dq, partial, *common, **meta)
            _bwd_key_kernel[grid](q, k, v, bias, dout, lse, delta, dk, dv, *common, **meta)
        dbias = partial.sum(dim=(0, 2)).to(bias.dtype)  # (h, k*k)
        return dq, dk, dv, dbias, None, None


@torch.compiler.disable
def triton_local_attention(
    q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int, out_dtype: torch.dtype
) -> Tensor:
    """Autograd-aware fused local attention; returns (B, h, H, W, dv) in `out_dtype`."""
    return _LocalAttention.apply(q, k, v, rel_bias, kernel_size, out_dtype)
