"""The Gated Self-Attention Group (GSAG) head, one small module per component of the
GSAG description (docs/design.md).

Variants (docs/model.md has the diagram and every choice made where the
description is silent):

| variant     | group (0) | key layer + PSA (1-2) | GSA + pooling + mapping + gate (3-5) |
| ----------- | --------- | --------------------- | ------------------------------------ |
| basic       | -         | -                     | -                                    |
| incremental | -         | yes                   | -                                    |
| hybrid      | yes       | yes                   | yes                                  |

Ablation switches of the hybrid (keyword arguments, all on by default): `group_formation`
(off: C5 only), `pointwise` (off: no local branch, so no PSA and no gate: G alone),
`global_attention` (off: no GSA; G is the pooled context vector alone, or nothing without the
mapping), `vector_mapping` (off: no pooled context vector), `gate` (off: the fixed average
0.5 L + 0.5 G). `kernel_size=1` removes only the PSA's neighbourhood: every position attends
to itself alone, so L = V and the gate still mixes V with G.

Attention tensors use the layout (B, h, H, W, d_head): the last dimension is contiguous, which
keeps `scaled_dot_product_attention` on its fused kernel and lets the local attention shift
views of a padded map instead of unfolding k*k copies of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsag.models.head_widths import head_widths
from gsag.models.layers import ConvBNReLU, resize
from gsag.models.local_attention import check_impl
from gsag.models.local_attention_dispatch import local_attention

VARIANTS = ("basic", "incremental", "hybrid")


def heads_to_map(x: Tensor) -> Tensor:
    """(B, h, H, W, d) -> (B, h * d, H, W)."""
    b, h, hh, ww, d = x.shape
    return x.permute(0, 1, 4, 2, 3).reshape(b, h * d, hh, ww)


class GroupFormation(nn.Module):
    """Group formation, the description's "group attention mechanism" (组注意力机制).

    Projects every backbone level to `channels` (1x1 conv-BN-ReLU), resizes them to the finest
    level's grid and fuses the G level vectors at each position with a softmax over the level
    axis; the score of a level is a shared 1x1 conv of its own vector plus a learned per-level bias.

    The levels are never stacked: each projected level is scored and added into the sum in the
    memory format it came in (ConvNeXt's levels are channels_last), so no level is copied into
    another layout (a stack of channels_last levels took twice the time of the projections).
    """

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels)
        self.score = nn.Conv2d(channels, 1, 1)
        self.level_bias = nn.Parameter(torch.zeros(len(in_channels)))

    def level_weights(self, levels: Sequence[Tensor]) -> Tensor:
        """Per-pixel softmax weights over levels: G maps (B, d, H, W) -> (B, G, H, W)."""
        scores = torch.cat([self.score(x) for x in levels], dim=1)  # (B, G, H, W)
        return (scores + self.level_bias.view(1, -1, 1, 1)).softmax(dim=1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        size = feats[0].shape[-2:]  # the largest map's; a loop, not max(key=): torch 2.4's
        for f in feats[1:]:  # dynamo cannot trace max(..., key=...) (torch.export fails)
            if f.shape[-2] * f.shape[-1] > size[0] * size[1]:
                size = f.shape[-2:]
        levels = [resize(p(f), size) for p, f in zip(self.proj, feats, strict=True)]
        weights = self.level_weights(levels)  # (B, G, H, W)
        out = levels[0] * weights[:, :1]
        for i in range(1, len(levels)):
            out = out + levels[i] * weights[:, i : i + 1]
        return out  # (B, d, H, W), in the memory format of the first level


def _pointwise(x: Tensor, linear: nn.Linear) -> Tensor:
    """`linear` at every position of `x` (B, C, H, W): (B, H, W, C_out), contiguous.

    One batched matrix product of the (B, H*W, C) token view, which is a view in both memory
    formats (a transposed one for NCHW maps), so neither layout is copied first; a 1x1
    convolution followed by a permute copied NCHW outputs into channel-last order. Not
    `linear(x.permute(0, 2, 3, 1))`: that folds B*H*W into one dimension, and torch 2.4's
    `torch.export` cannot prove the view back valid for a dynamic batch, so it fixes the batch.
    """
    b, _, hh, ww = x.shape
    tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
    weight = linear.weight.t().expand(b, -1, -1)  # (B, C, C_out), no copy
    out = torch.baddbmm(linear.bias, tokens, weight)  # (B, H*W, C_out)
    return out.view(b, hh, ww, linear.out_features)


class KeyLayer(nn.Module):
    """Key layer, the description's "key-query linear layer" and "value linear layer" (关键层).

    Two 1x1 convolutions, written as per-position linear layers: one gives queries and keys
    (`key_channels` each), the other values (`value_channels`), split into `num_heads` heads.
    Returns q, k of shape (B, h, H, W, key_channels / h) and v of shape (B, h, H, W, value_channels / h).
    """

    def __init__(
        self, channels: int, key_channels: int, value_channels: int, num_heads: int
    ) -> None:
        super().__init__()
        for name, c in (("key_channels", key_channels), ("value_channels", value_channels)):
            if c % num_heads:
                raise ValueError(f"{name}={c} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.key_channels = key_channels
        self.qk = nn.Linear(channels, 2 * key_channels)
        self.v = nn.Linear(channels, value_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, _, hh, ww = x.shape
        # explicit head sizes, not -1: torch 2.4's export cannot prove -1 valid for a dynamic batch
        h, dk, dv = self.num_heads, self.key_channels // self.num_heads, self.v.out_features
        qk = _pointwise(x, self.qk).view(b, hh, ww, 2, h, dk)  # (B, H, W, 2, h, dk)
        v = _pointwise(x, self.v).view(b, hh, ww, h, dv // h)  # (B, H, W, h, dv)
        q = qk[:, :, :, 0].permute(0, 3, 1, 2, 4)  # (B, h, H, W, dk)
        k = qk[:, :, :, 1].permute(0, 3, 1, 2, 4)
        return q, k, v.permute(0, 3, 1, 2, 4)  # v: (B, h, H, W, dv)


class PointwiseSelfAttention(nn.Module):
    """Pointwise self-attention (PSA), the description's "query layer" (逐点自注意力机制 / 查询层).

    Every position attends to its k x k neighbourhood with a learned relative-position bias per
    head; neighbours outside the image are masked out. Exact. `impl` picks the implementation
    (`gsag.models.local_attention.IMPLS`): "auto" runs fused Triton kernels on CUDA and the
    reference loop over the k*k offsets on a padded view elsewhere; neither materialises k*k
    copies of the keys and values.
    """

    def __init__(self, num_heads: int, kernel_size: int = 7, impl: str = "auto") -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be a positive odd number")
        self.kernel_size = kernel_size
        self.impl = check_impl(impl)
        self.rel_bias = nn.Parameter(torch.zeros(num_heads, kernel_size * kernel_size))
        nn.init.trunc_normal_(self.rel_bias, std=0.02)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        # (B, h, H, W, dk), (B, h, H, W, dk), (B, h, H, W, dv) -> (B, h, H, W, dv)
        return local_attention(q, k, v, self.rel_bias, self.kernel_size, self.impl)

    def extra_flops(self, inputs: tuple[Tensor, ...], output: Tensor) -> int:
        """FLOPs of the element-wise products, which `FlopCounterMode` does not see."""
        q = inputs[0]
        b, h, hh, ww, dk = q.shape
        return 2 * b * h * hh * ww * self.kernel_size**2 * (dk + output.shape[-1])


class GlobalSelfAttention(nn.Module):
    """Global self-attention (GSA), the description's "global self-attention mechanism" (全局自注意力机制).

    Every position attends to all positions: softmax(q k^T / sqrt(d)) v per head, through
    `scaled_dot_product_attention` (a fused kernel; the N x N matrix is never built in Python).
    Cost is quadratic in the number of positions; use slide inference for large images.
    """

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, h, hh, ww, _ = q.shape
        out = F.scaled_dot_product_attention(
            q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3)
        )  # (B, h, N, dv)
        return out.view(b, h, hh, ww, v.shape[-1])  # (B, h, H, W, dv); not -1 (see KeyLayer)


class AttentionMeanPooling(nn.Module):
    """Attention-mean pooling, the description's "attention-mean-pooling layer" (注意力均值池化层).

    A learned query per head scores every key; a softmax over positions gives weights, and the
    weighted means of the query-key pairs and of the values are one descriptor each per image.
    Returns (pooled_qk (B, 2 * key_channels), pooled_v (B, value_channels)).
    """

    def __init__(self, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(num_heads, head_dim))
        nn.init.trunc_normal_(self.query, std=0.02)

    def weights(self, k: Tensor) -> Tensor:
        """Softmax over positions of the learned score: (B, h, H, W, dk) -> (B, h, 1, N)."""
        scores = (k.flatten(2, 3) * self.query[:, None]).sum(-1) * k.shape[-1] ** -0.5
        return scores.softmax(dim=-1).unsqueeze(2)  # (B, h, 1, N)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weights(k)
        qk = torch.cat([q, k], dim=-1).flatten(2, 3)  # (B, h, N, 2 dk)
        pooled_qk = (w @ qk).flatten(1)  # (B, h * 2 dk)
        pooled_v = (w @ v.flatten(2, 3)).flatten(1)  # (B, h * dv)
        return pooled_qk, pooled_v


class VectorMapping(nn.Module):
    """Vector mapping, the description's "vector mapping" (向量映射).

    Concatenates the pooled query-key descriptor and the pooled value vector, maps them through
    a linear layer, ReLU, a 1x1 conv and a ReLU into one (B, channels, 1, 1) context vector that
    is added (broadcast) to the global attention output.
    """

    def __init__(self, in_features: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, channels)
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, pooled_qk: Tensor, pooled_v: Tensor) -> Tensor:
        z = F.relu(self.linear(torch.cat([pooled_qk, pooled_v], dim=1)))  # (B, channels)
        return F.relu(self.conv(z[:, :, None, None]))  # (B, channels, 1, 1)


class GatedPooling(nn.Module):
    """Gated pooling, the description's "gated pooling layer" (门控池化层).

    Global statistics (per-channel mean and std over positions) of L and G give a channel gate
    through a small two-layer MLP; local statistics (per-position mean and std over channels)
    give a spatial gate through a 1x1 conv. `g = sigmoid(channel + spatial)` and the output is
    `g * L + (1 - g) * G`.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.channel = nn.Sequential(
            nn.Linear(4 * channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )
        self.spatial = nn.Conv2d(4, 1, 1)

    @staticmethod
    def _mean_std(x: Tensor, dim: int | tuple[int, ...]) -> tuple[Tensor, Tensor]:
        # two passes (mean, then the mean square deviation): on CPU about ten times faster than
        # `torch.var_mean`, whose one-pass kernel took 6 ms per statistic of a (1, 256, 64, 64) map
        mean = x.mean(dim=dim, keepdim=True)
        var = (x - mean).square().mean(dim=dim)
        return mean.view(var.shape), (var + 1e-5).sqrt()

    def gate(self, local: Tensor, glob: Tensor) -> Tensor:
        """Gate values in [0, 1], shape (B, C, H, W), for L and G of shape (B, C, H, W)."""
        global_stats = torch.cat([*self._mean_std(local, (2, 3)), *self._mean_std(glob, (2, 3))], 1)
        local_stats = torch.stack([*self._mean_std(local, 1), *self._mean_std(glob, 1)], 1)
        channel = self.channel(global_stats)[:, :, None, None]  # (B, C, 1, 1)
        spatial = self.spatial(local_stats)  # (B, 1, H, W)
        return torch.sigmoid(channel + spatial)

    def forward(self, local: Tensor, glob: Tensor) -> Tensor:
        g = self.gate(local, glob)
        return g * local + (1 - g) * glob


class GSAGHead(nn.Module):
    """The GSAG segmentation head (the description's Basic / Incremental / Hybrid variants).

    Args:
        in_channels: channels of the backbone levels (C3, C4, C5 by default).
        num_classes: output classes.
        variant: "basic", "incremental" or "hybrid".
        head_channels: width d of X and of the head's output maps; None: half the widest
            level, a power of two in [128, 512] (`gsag.models.head_widths`).
        key_channels: total query/key width d_k (split over heads); None: d / 2, at most 128.
        value_channels: total value width d_v; defaults to key_channels, so that every head has
            the same query and value size and the fused attention kernel applies.
        num_heads: attention heads h; None: d_k / 32 (heads 32 wide).
        kernel_size: PSA neighbourhood k.
        fuse_channels: width of the final conv3x3-BN-ReLU.
        dropout: dropout before the classifier.
        attention_impl: PSA implementation, "auto" (Triton on CUDA, else the reference loop),
            "reference" or "triton" (`gsag.models.local_attention.IMPLS`).
        group_formation: hybrid only; False projects C5 alone (no GroupFormation).
        pointwise: hybrid only; False drops the local branch, the PSA and the gate (which has
            nothing to mix): the attention output is G alone. To remove the PSA alone, keep it
            and set kernel_size=1 (L = V).
        global_attention: hybrid only; False drops the global self-attention: G is the mapped
            pooled context vector broadcast over the map, or absent (L alone, no gate) when
            vector_mapping is off too.
        vector_mapping: hybrid only; False drops the attention-mean pooling and the vector
            mapping: G is the global attention output alone.
        gate: hybrid only; False replaces the gated pooling by the fixed average 0.5 L + 0.5 G.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        variant: str = "hybrid",
        head_channels: int | None = None,
        key_channels: int | None = None,
        value_channels: int | None = None,
        num_heads: int | None = None,
        kernel_size: int = 7,
        fuse_channels: int = 256,
        dropout: float = 0.1,
        attention_impl: str = "auto",
        group_formation: bool = True,
        pointwise: bool = True,
        vector_mapping: bool = True,
        gate: bool = True,
        global_attention: bool = True,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown GSAG variant {variant!r}; valid: {', '.join(VARIANTS)}")
        check_impl(attention_impl)
        switches = dict(group_formation=group_formation, pointwise=pointwise, gate=gate)
        switches.update(vector_mapping=vector_mapping, global_attention=global_attention)
        off = [name for name, on in switches.items() if not on]
        if off and variant != "hybrid":
            raise ValueError(
                f"{', '.join(off)}=False: the ablation switches apply to the hybrid variant only, "
                f"not {variant!r}; use variant='hybrid' or leave them on"
            )
        if not (pointwise or global_attention or vector_mapping):
            raise ValueError(
                "pointwise, global_attention and vector_mapping all False leave the hybrid no "
                "attention; keep one on or use variant='basic'"
            )
        self.variant = variant
        hybrid = variant == "hybrid"
        has_global = global_attention or vector_mapping
        self.use_psa = variant == "incremental" or (hybrid and pointwise)
        #: the widths this head was built with, given or chosen by the rule
        self.widths = head_widths(in_channels, head_channels, key_channels, num_heads)
        d, key_channels = self.widths["head_channels"], self.widths["key_channels"]
        num_heads = self.widths["num_heads"]
        dv = value_channels or key_channels
        if hybrid and group_formation:
            self.group = GroupFormation(in_channels, d)
        else:
            self.proj = ConvBNReLU(in_channels[-1], d, 1)
        # creation order as before the switches, so a seed draws the same initial weights
        if variant != "basic":
            self.key = KeyLayer(d, key_channels, dv, num_heads)
        if self.use_psa:
            self.psa = PointwiseSelfAttention(num_heads, kernel_size, attention_impl)
        if variant != "basic":
            self.out_proj = nn.Sequential(nn.Conv2d(dv, d, 1, bias=False), nn.BatchNorm2d(d))
        if hybrid and global_attention:
            self.gsa = GlobalSelfAttention()
        if hybrid and vector_mapping:
            self.pool = AttentionMeanPooling(num_heads, key_channels // num_heads)
            self.mapping = VectorMapping(2 * key_channels + dv, dv)
        if hybrid and pointwise and gate and has_global:
            self.gated = GatedPooling(dv)
        self.fuse = ConvBNReLU(d, fuse_channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(fuse_channels, num_classes, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        x = self.group(feats) if hasattr(self, "group") else self.proj(feats[-1])  # (B, d, H, W)
        if self.variant != "basic":
            q, k, v = self.key(x)  # (B, h, H, W, dk), (B, h, H, W, dv)
            y = heads_to_map(self.psa(q, k, v)) if self.use_psa else None  # L: (B, dv, H, W)
            if self.variant == "hybrid":
                y = self._mix(y, self._global(q, k, v))  # (B, dv, H, W)
            x = x + self.out_proj(y)  # residual Y + X: (B, d, H, W)
        return self.classifier(self.dropout(self.fuse(x)))  # (B, num_classes, H, W)

    def _global(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor | None:
        """G: global attention plus the mapped pooled context vector, (B, dv, H, W); either
        part alone when the other is switched off, None when both are."""
        glob = heads_to_map(self.gsa(q, k, v)) if hasattr(self, "gsa") else None
        if hasattr(self, "mapping"):
            context = self.mapping(*self.pool(q, k, v))  # (B, dv, 1, 1)
            if glob is None:  # broadcast over the map: (B, dv, H, W)
                glob = context.expand(*context.shape[:2], *q.shape[2:4])
            else:
                glob = glob + context
        return glob

    def _mix(self, local: Tensor | None, glob: Tensor | None) -> Tensor:
        """Combine L and G: the gate, the fixed average without it, or whichever exists."""
        if local is None or glob is None:
            out = glob if local is None else local
            assert out is not None  # __init__ refuses a hybrid with neither
            return out
        if hasattr(self, "gated"):
            return self.gated(local, glob)
        return 0.5 * (local + glob)
