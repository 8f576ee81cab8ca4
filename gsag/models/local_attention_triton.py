"""Triton kernels of the k x k local attention (see `gsag.models.local_attention`).

Imported lazily: only `local_attention_triton` imports this module, so gsag imports without
triton, and `TRITON_INTERPRET=1` set before the first call still selects the interpreter.

One program handles one (batch, head) pair and a block of 16 to 64 pixels (fewer for wide
heads, to keep the (pixels, head size) tiles in registers). Rows of q, k, v, dout
are read through their (b, h, y, x) strides, so the permuted views the key layer returns need
no copy (rows need a unit channel stride: dout, which reaches the backward channel-first from
the head, is copied once); the output is written channel-first (`new_output`), the layout
the head reads next.
Softmax statistics are float32; the forward pass keeps the log-sum-exp per pixel.
- forward: an online softmax over the k*k neighbours, one neighbour row of k and v at a time;
- backward, query side: dq, and per program the sum over its pixels of the bias gradient,
  accumulated in registers as a (pixels, k*k) tile and reduced over the pixels once after the
  neighbour loop (no barrier inside it); the programs' sums are added with torch afterwards
  (deterministic, no atomics);
- backward, key side: dk and dv, by visiting for each key the queries that see it.
"""

# no `from __future__ import annotations`: Triton 3.0's interpreter recognises constexpr
# parameters only by the annotation object `tl.constexpr`, not by the string
import contextlib

import torch
import triton
import triton.language as tl
from torch import Tensor

from gsag.models.local_attention import new_output

NEG_BIG = tl.constexpr(-1.0e30)  # initial running max: finite, so exp(m - m_new) is never NaN
LOG2E = tl.constexpr(1.4426950408889634)  # logits are kept in base 2: exp(x) = exp2(x log2 e)


@triton.jit
def _tile(ptr, base, sy, sx, y, x, cols, WIDE: tl.constexpr):
    """(BLOCK, D) pointers to the rows at pixels (y, x), computed once per program.

    WIDE: compute the pixel offsets in int64 (a plane with offsets at or above 2**31)."""
    if WIDE:
        y, x = y.to(tl.int64), x.to(tl.int64)
    return ptr + base + (y * sy + x * sx)[:, None] + cols[None, :]


@triton.jit
def _at(tile, dy, dx, sy, sx, mask, WIDE: tl.constexpr):
    """Load `tile` shifted by (dy, dx) pixels (one scalar offset) as float32; masked are 0."""
    if WIDE:
        dy, dx = tl.cast(dy, tl.int64), tl.cast(dx, tl.int64)  # ints when interpreted
    return tl.load(tile + (dy * sy + dx * sx), mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _rows(ptr, base, sy, sx, y, x, cols, row_mask, col_mask, WIDE: tl.constexpr):
    """Load (BLOCK, D) rows at pixels (y, x) as float32; masked entries are 0."""
    tile = _tile(ptr, base, sy, sx, y, x, cols, WIDE)
    return tl.load(tile, mask=row_mask[:, None] & col_mask[None, :], other=0.0).to(tl.float32)


@triton.jit
def _program(bh, NH, WIDE: tl.constexpr):
    """(batch, head) of program axis 1; the batch in int64, the head too when WIDE (so that
    head * head stride, a product of two int32 otherwise, cannot overflow)."""
    head = bh % NH
    if WIDE:
        head = head.to(tl.int64)
    return (bh // NH).to(tl.int64), head


@triton.jit
def _fwd_kernel(
    Q, K, V, BIAS, OUT, LSE,
    sqb, sqh, sqy, sqx, skb, skh, sky, skx, svb, svh, svy, svx, sob, soh, sod,
    NH, H, W, DK, DV, scale,
    KS: tl.constexpr, BLOCK: tl.constexpr, DKP: tl.constexpr, DVP: tl.constexpr,
    WIDE: tl.constexpr,
):  # fmt: skip
    blk, bh = tl.program_id(0), tl.program_id(1)  # pixel blocks on axis 0 (no 65535 limit)
    b, head = _program(bh, NH, WIDE)
    pix = blk * BLOCK + tl.arange(0, BLOCK)
    inside = pix < H * W
    y, x = pix // W, pix % W
    ck, cv = tl.arange(0, DKP), tl.arange(0, DVP)
    q = _rows(Q, b * sqb + head * sqh, sqy, sqx, y, x, ck, inside, ck < DK, WIDE) * (scale * LOG2E)
    m = tl.full((BLOCK,), NEG_BIG, tl.float32)
    den = tl.zeros((BLOCK,), tl.float32)
    acc = tl.zeros((BLOCK, DVP), tl.float32)
    kp = _tile(K, b * skb + head * skh, sky, skx, y, x, ck, WIDE)
    vp = _tile(V, b * svb + head * svh, svy, svx, y, x, cv, WIDE)
    for o in range(KS * KS):
        dy, dx = o // KS - KS // 2, o % KS - KS // 2
        ny, nx = y + dy, x + dx
        valid = inside & (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
        kt = _at(kp, dy, dx, sky, skx, valid[:, None] & (ck < DK)[None, :], WIDE)
        s = tl.sum(q * kt, axis=1) + tl.load(BIAS + head * KS * KS + o).to(tl.float32) * LOG2E
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m, s)
        alpha, p = tl.exp2(m - m_new), tl.exp2(s - m_new)
        vt = _at(vp, dy, dx, svy, svx, valid[:, None] & (cv < DV)[None, :], WIDE)
        acc = acc * alpha[:, None] + p[:, None] * vt
        den = den * alpha + p
        m = m_new
    den = tl.where(inside, den, 1.0)
    # out is channel-first: pixels at unit stride, so the store is coalesced along pixels
    rows, cols = pix, cv * sod
    if WIDE:
        rows, cols = pix.to(tl.int64), cv.to(tl.int64) * sod
    out = OUT + b * sob + head.to(tl.int64) * soh + rows[:, None] + cols[None, :]
    tl.store(out, acc / den[:, None], mask=inside[:, None] & (cv < DV)[None, :])
    tl.store(LSE + bh.to(tl.int64) * H * W + pix, m + tl.log2(den), mask=inside)  # base 2


@triton.jit
def _bwd_query_kernel(
    Q, K, V, BIAS, DOUT, LSE, DELTA, DQ, DBIAS,
    sqb, sqh, sqy, sqx, skb, skh, sky, skx, svb, svh, svy, svx, sob, soh, soy, sox,
    NH, H, W, DK, DV, scale,
    KS: tl.constexpr, BLOCK: tl.constexpr, DKP: tl.constexpr, DVP: tl.constexpr,
    WIDE: tl.constexpr, KKP: tl.constexpr,
):  # fmt: skip
    blk, bh = tl.program_id(0), tl.program_id(1)  # pixel blocks on axis 0 (no 65535 limit)
    b, head = _program(bh, NH, WIDE)
    pix = blk * BLOCK + tl.arange(0, BLOCK)
    inside = pix < H * W
    y, x = pix // W, pix % W
    ck, cv = tl.arange(0, DKP), tl.arange(0, DVP)
    q = _rows(Q, b * sqb + head * sqh, sqy, sqx, y, x, ck, inside, ck < DK, WIDE) * (scale * LOG2E)
    do = _rows(DOUT, b * sob + head * soh, soy, sox, y, x, cv, inside, cv < DV, WIDE)
    stat = bh.to(tl.int64) * H * W + pix
    lse = tl.load(LSE + stat, mask=inside, other=0.0)
    delta = tl.load(DELTA + stat, mask=inside, other=0.0)
    dq = tl.zeros((BLOCK, DKP), tl.float32)
    kk = tl.arange(0, KKP)  # the k*k offsets, padded to a power of two
    dbias = tl.zeros((BLOCK, KKP), tl.float32)  # column o: this program's ds of offset o
    kp = _tile(K, b * skb + head * skh, sky, skx, y, x, ck, WIDE)
    vp = _tile(V, b * svb + head * svh, svy, svx, y, x, cv, WIDE)
    for o in range(KS * KS):
        dy, dx = o // KS - KS // 2, o % KS - KS // 2
        ny, nx = y + dy, x + dx
        valid = inside & (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
        kt = _at(kp, dy, dx, sky, skx, valid[:, None] & (ck < DK)[None, :], WIDE)
        vt = _at(vp, dy, dx, svy, svx, valid[:, None] & (cv < DV)[None, :], WIDE)
        s = tl.sum(q * kt, axis=1) + tl.load(BIAS + head * KS * KS + o).to(tl.float32) * LOG2E
        p = tl.where(valid, tl.exp2(s - lse), 0.0)
        ds = p * (tl.sum(do * vt, axis=1) - delta)  # d loss / d logit
        dq += ds[:, None] * kt
        dbias += ds[:, None] * (kk == o).to(tl.float32)[None, :]  # one FMA per element
    dq_offs = (bh.to(tl.int64) * H * W + pix)[:, None] * DK + ck[None, :]
    tl.store(DQ + dq_offs, dq * scale, mask=inside[:, None] & (ck < DK)[None, :])
    partial = DBIAS + (bh.to(tl.int64) * tl.num_programs(0) + blk) * KS * KS
    tl.store(partial + kk, tl.sum(dbias, axis=0), mask=kk < KS * KS)  # one reduction


@triton.jit
def _bwd_key_kernel(
    Q, K, V, BIAS, DOUT, LSE, DELTA, DK_, DV_,
    sqb, sqh, sqy, sqx, skb, skh, sky, skx, svb, svh, svy, svx, sob, soh, soy, sox,
    NH, H, W, DK, DV, scale,
    KS: tl.constexpr, BLOCK: tl.constexpr, DKP: tl.constexpr, DVP: tl.constexpr,
    WIDE: tl.constexpr,
):  # fmt: skip
    blk, bh = tl.program_id(0), tl.program_id(1)  # pixel blocks on axis 0 (no 65535 limit)
    b, head = _program(bh, NH, WIDE)
    pix = blk * BLOCK + tl.arange(0, BLOCK)
    inside = pix < H * W
    y, x = pix // W, pix % W
    ck, cv = tl.arange(0, DKP), tl.arange(0, DVP)
    kt = _rows(K, b * skb + head * skh, sky, skx, y, x, ck, inside, ck < DK, WIDE) * LOG2E
    vt = _rows(V, b * svb + head * svh, svy, svx, y, x, cv, inside, cv < DV, WIDE)
    dk = tl.zeros((BLOCK, DKP), tl.float32)
    dv = tl.zeros((BLOCK, DVP), tl.float32)
    qp = _tile(Q, b * sqb + head * sqh, sqy, sqx, y, x, ck, WIDE)
    dop = _tile(DOUT, b * sob + head * soh, soy, sox, y, x, cv, WIDE)
    stat = bh.to(tl.int64) * H * W + pix
    for o in range(KS * KS):
        # the query at (py, px) = (y - dy, x - dx) sees this key through offset o
        dy, dx = o // KS - KS // 2, o % KS - KS // 2
        py, px = y - dy, x - dx
        valid = inside & (py >= 0) & (py < H) & (px >= 0) & (px < W)
        q = _at(qp, -dy, -dx, sqy, sqx, valid[:, None] & (ck < DK)[None, :], WIDE) * scale
        do = _at(dop, -dy, -dx, soy, sox, valid[:, None] & (cv < DV)[None, :], WIDE)
        lse = tl.load(LSE + stat - (dy * W + dx), mask=valid, other=0.0)
        delta = tl.load(DELTA + stat - (dy * W + dx), mask=valid, other=0.0)
        s = tl.sum(q * kt, axis=1) + tl.load(BIAS + head * KS * KS + o).to(tl.float32) * LOG2E
        p = tl.where(valid, tl.exp2(s - lse), 0.0)
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


def needs_int64(*tensors: Tensor) -> bool:
    """Whether an offset the kernels compute in int32 can reach 2**31: within one batch
    element, head * head stride plus a pixel's y * sy + x * sx (+ its channel offset)."""
    return any(
        sum((n - 1) * s for n, s in zip(t.shape[1:], t.stride()[1:], strict=True)) >= 2**31
        for t in tensors
    )


def _meta(q: Tensor, v: Tensor, kernel_size: int, wide: bool) -> dict:
    """Shape arguments and compile-time constants shared by the three kernels."""
    _, nh, hh, ww, dk = q.shape
    dv = v.shape[-1]
    dkp, dvp = triton.next_power_of_2(dk), triton.next_power_of_2(dv)
    block = max(16, min(64, 2048 // max(dkp, dvp)))  # pixels per program
    return dict(
        NH=nh, H=hh, W=ww, DK=dk, DV=dv, scale=dk**-0.5, KS=kernel_size, BLOCK=block,
        DKP=dkp, DVP=dvp, WIDE=wide,
    )  # fmt: skip


def grid(q: Tensor, block: int) -> tuple[int, int]:
    """(pixel blocks, B * h): axis 0 has no 65,535 limit, axis 1 does (checked by callers)."""
    b, nh, hh, ww, _ = q.shape
    return triton.cdiv(hh * ww, block), b * nh


def _on(x: Tensor) -> contextlib.AbstractContextManager:
    """Make x's GPU the current one: Triton launches on the current device."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def forward(
    q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, kernel_size: int, out_dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """out (B, h, H, W, dv) in `out_dtype`, stored channel-first (`new_output`), and the
    float32 log-sum-exp (B * h, H * W)."""
    (q, sq), (k, sk), (v, sv) = _strided(q), _strided(k), _strided(v)
    b, nh, hh, ww, _ = q.shape
    out = new_output(q, v.shape[-1], out_dtype)  # (B, h, H, W, dv)
    assert out.stride()[2:4] == (ww, 1), "the kernel writes pixels at unit stride"
    lse = q.new_empty((b * nh, hh * ww), dtype=torch.float32)
    meta = _meta(q, v, kernel_size, needs_int64(q, k, v, out))
    so = (out.stride(0), out.stride(1), out.stride(4))
    with _on(q):
        _fwd_kernel[grid(q, meta["BLOCK"])](
            q, k, v, rel_bias.contiguous(), out, lse, *sq, *sk, *sv, *so, **meta
        )
    return out, lse


def backward(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, rel_bias: Tensor, out: Tensor, lse: Tensor,
    kernel_size: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """dq, dk, dv (contiguous, in the inputs' dtypes) and d rel_bias (h, k*k)."""
    (q, sq), (k, sk), (v, sv), (dout, so) = _strided(q), _strided(k), _strided(v), _strided(dout)
    bias = rel_bias.contiguous()
    b, nh, hh, ww, _ = q.shape
    delta = (dout.float() * out.float()).sum(-1).reshape(b * nh, hh * ww).contiguous()
    meta = _meta(q, v, kernel_size, needs_int64(q, k, v, dout))
    g = grid(q, meta["BLOCK"])
    dq, dk, dv = q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)
    partial = q.new_empty((b, nh, g[0], bias.shape[1]), dtype=torch.float32)
    common = (*sq, *sk, *sv, *so)
    with _on(q):
        kkp = triton.next_power_of_2(kernel_size**2)
        _bwd_query_kernel[g](q, k, v, bias, dout, lse, delta, dq, partial, *common, **meta, KKP=kkp)
        _bwd_key_kernel[g](q, k, v, bias, dout, lse, delta, dk, dv, *common, **meta)
    dbias = partial.sum(dim=(0, 2)).to(bias.dtype)  # (h, k*k)
    return dq, dk, dv, dbias
