"""Each GSAG component against an independent, naive reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import gsag
from gsag.flops import count_gflops, count_params
from gsag.models import gsag as G
from gsag.models.heads import ASPP_RATES, ChannelAttention, PositionAttention


@pytest.fixture(autouse=True)
def float64():
    """Compare against the references in double precision."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def rand_qkv(b=2, h=2, hh=5, ww=6, dk=3, dv=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, hh, ww, dk, generator=g)
    k = torch.randn(b, h, hh, ww, dk, generator=g)
    v = torch.randn(b, h, hh, ww, dv, generator=g)
    return q, k, v


@pytest.mark.parametrize("ks, hh, ww", [(3, 5, 6), (5, 4, 7), (7, 3, 3), (1, 2, 3)])
def test_local_attention_matches_naive_reference(ks, hh, ww, naive_local_attention):
    q, k, v = rand_qkv(hh=hh, ww=ww)
    psa = G.PointwiseSelfAttention(num_heads=2, kernel_size=ks)
    with torch.no_grad():
        psa.rel_bias.normal_()
    expected = naive_local_attention(q, k, v, psa.rel_bias.detach(), ks)
    torch.testing.assert_close(psa(q, k, v), expected)


def test_local_attention_with_kernel_one_returns_values():
    q, k, v = rand_qkv()
    torch.testing.assert_close(G.PointwiseSelfAttention(2, kernel_size=1)(q, k, v), v)


def test_local_attention_rejects_even_kernel():
    with pytest.raises(ValueError, match="kernel_size=4"):
        G.PointwiseSelfAttention(2, kernel_size=4)


def test_global_attention_matches_explicit_softmax():
    q, k, v = rand_qkv(dk=4, dv=4)
    b, h, hh, ww, _ = q.shape
    qf, kf, vf = (t.reshape(b, h, hh * ww, -1) for t in (q, k, v))
    attn = torch.softmax(qf @ kf.transpose(-1, -2) / math.sqrt(4), dim=-1)  # (B, h, N, N)
    expected = (attn @ vf).reshape(b, h, hh, ww, -1)
    torch.testing.assert_close(G.GlobalSelfAttention()(q, k, v), expected)


def test_global_attention_feeds_sdpa_last_dim_contiguous(monkeypatch):
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append([t.stride(-1) for t in (q, k, v)])
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(G.F, "scaled_dot_product_attention", spy)
    model = gsag.create_model(
        "gsag_hybrid", 3, backbone="test_resnet", head_channels=16, key_channels=8, num_heads=2
    )
    model.eval()(torch.randn(1, 3, 32, 32))
    assert seen == [[1, 1, 1]]


def test_attention_mean_pooling_matches_formula():
    q, k, v = rand_qkv()
    pool = G.AttentionMeanPooling(num_heads=2, head_dim=3)
    with torch.no_grad():
        pool.query.normal_()
    b, h, hh, ww, dk = q.shape
    kf = k.reshape(b, h, -1, dk)
    w = torch.softmax(torch.einsum("bhnd,hd->bhn", kf, pool.query) / math.sqrt(dk), -1)
    qk = torch.cat([q, k], -1).reshape(b, h, hh * ww, -1)
    pooled_qk, pooled_v = pool(q, k, v)
    torch.testing.assert_close(pooled_qk, torch.einsum("bhn,bhnd->bhd", w, qk).reshape(b, -1))
    expected_v = torch.einsum("bhn,bhnd->bhd", w, v.reshape(b, h, hh * ww, -1)).reshape(b, -1)
    torch.testing.assert_close(pooled_v, expected_v)


def test_vector_mapping_matches_formula():
    mapping = G.VectorMapping(in_features=10, channels=6)
    a, c = torch.randn(2, 4), torch.randn(2, 6)
    z = torch.relu(torch.cat([a, c], 1) @ mapping.linear.weight.T + mapping.linear.bias)
    expected = torch.relu(z @ mapping.conv.weight[:, :, 0, 0].T + mapping.conv.bias)
    torch.testing.assert_close(mapping(a, c), expected[:, :, None, None])


def test_gate_in_unit_interval_and_output_is_convex_mix():
    gated = G.GatedPooling(channels=16)
    local, glob = torch.randn(2, 16, 5, 7) * 3, torch.randn(2, 16, 5, 7) * 3
    g = gated.gate(local, glob)
    assert g.shape == local.shape
    assert (g >= 0).all() and (g <= 1).all()
    assert g.std() > 0  # not a constant gate
    torch.testing.assert_close(gated(local, glob), g * local + (1 - g) * glob)


def test_gate_statistics_by_hand():
    gated = G.GatedPooling(channels=8)
    local, glob = torch.randn(1, 8, 3, 4), torch.randn(1, 8, 3, 4)

    def mean_std(x, dim):
        return x.mean(dim), (((x - x.mean(dim, keepdim=True)) ** 2).mean(dim) + 1e-5).sqrt()

    stats_c = torch.cat([*mean_std(local, (2, 3)), *mean_std(glob, (2, 3))], 1)  # (1, 32)
    stats_s = torch.stack([*mean_std(local, 1), *mean_std(glob, 1)], 1)  # (1, 4, 3, 4)
    channel = gated.channel(stats_c)[:, :, None, None]
    spatial = F.conv2d(stats_s, gated.spatial.weight, gated.spatial.bias)
    torch.testing.assert_close(gated.gate(local, glob), torch.sigmoid(channel + spatial))


def test_group_formation_is_softmax_weighted_sum_over_levels():
    group = G.GroupFormation([3, 5, 4], channels=6).eval()
    with torch.no_grad():
        group.level_bias.copy_(torch.tensor([0.3, -0.2, 0.5]))
    feats = [torch.randn(2, 3, 8, 10), torch.randn(2, 5, 4, 5), torch.randn(2, 4, 8, 10)]
    projected = [
        F.interpolate(p(f), size=(8, 10), mode="bilinear", align_corners=False)
        for p, f in zip(group.proj, feats, strict=True)
    ]
    scores = torch.stack(
        [group.score(p)[:, 0] + group.level_bias[i] for i, p in enumerate(projected)], 1
    )  # (B, G, H, W)
    w = scores.softmax(1)
    expected = sum(w[:, i, None] * p for i, p in enumerate(projected))
    torch.testing.assert_close(group(feats), expected)


def test_key_layer_splits_heads_per_position():
    layer = G.KeyLayer(channels=6, key_channels=4, value_channels=8, num_heads=2)
    x = torch.randn(1, 6, 3, 5)
    q, k, v = layer(x)
    assert q.shape == k.shape == (1, 2, 3, 5, 2) and v.shape == (1, 2, 3, 5, 4)
    token = x[0, :, 1, 2]  # (6,)
    qk = layer.qk.weight @ token + layer.qk.bias  # (8,) = [q (4) | k (4)]
    torch.testing.assert_close(q[0, :, 1, 2].reshape(-1), qk[:4])
    torch.testing.assert_close(k[0, :, 1, 2].reshape(-1), qk[4:])
    torch.testing.assert_close(v[0, :, 1, 2].reshape(-1), layer.v.weight @ token + layer.v.bias)


def test_key_layer_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="num_heads=3"):
        G.KeyLayer(8, key_channels=8, value_channels=9, num_heads=3)


@pytest.mark.parametrize("exporting", [False, True], ids=["sdpa", "onnx-export-path"])
def test_position_attention_matches_unscaled_softmax(exporting, monkeypatch):
    # while exporting to ONNX the module takes an explicit matmul path (torch 2.4's exporter
    # cannot translate SDPA with scale=1); both must equal the unscaled DANet product
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: exporting)
    pam = PositionAttention(16)
    with torch.no_grad():
        pam.gamma.fill_(0.7)
    x = torch.randn(2, 16, 3, 4)
    q, k, v = (m(x).flatten(2) for m in (pam.query, pam.key, pam.value))  # (B, C', N)
    attn = torch.softmax(q.transpose(1, 2) @ k, -1)  # (B, N, N)
    expected = 0.7 * (v @ attn.transpose(1, 2)).view_as(x) + x
    torch.testing.assert_close(pam(x), expected)


def test_channel_attention_matches_danet_formula():
    cam = ChannelAttention()
    with torch.no_grad():
        cam.gamma.fill_(0.3)
    x = torch.randn(2, 4, 3, 5)
    f = x.flatten(2)
    energy = f @ f.transpose(1, 2)
    attn = torch.softmax(energy.max(-1, keepdim=True).values - energy, -1)
    torch.testing.assert_close(cam(x), 0.3 * (attn @ f).view_as(x) + x)


def module_types(model):
    return {type(m) for m in model.head.modules()}


def test_variants_follow_the_table():
    attention = {
        G.GroupFormation,
        G.KeyLayer,
        G.PointwiseSelfAttention,
        G.GlobalSelfAttention,
        G.AttentionMeanPooling,
        G.VectorMapping,
        G.GatedPooling,
    }
    build = {
        v: gsag.create_model(f"gsag_{v}", 21, backbone="resnet18", aux=False)
        for v in ("basic", "incremental", "hybrid")
    }
    assert module_types(build["basic"]) & attention == set()
    assert module_types(build["incremental"]) & attention == {
        G.KeyLayer,
        G.PointwiseSelfAttention,
    }
    assert module_types(build["hybrid"]) & attention == attention
    params = [count_params(build[v]) for v in ("basic", "incremental", "hybrid")]
    assert params[0] < params[1] < params[2]


def test_head_reads_channels_from_feature_info():
    model = gsag.create_model("gsag_hybrid", 4, backbone="resnet18", aux=True)
    channels = model.backbone.body.feature_info.channels()
    assert [p[0].in_channels for p in model.head.group.proj] == channels
    assert model.aux_head.conv[0].in_channels == channels[-2]


@pytest.mark.parametrize("os_", [8, 16, 32])
def test_deeplabv3_rates_follow_output_stride(os_):
    model = gsag.create_model("deeplabv3", 3, backbone="test_resnet", output_stride=os_)
    dilations = [b[0].dilation[0] for b in model.head.aspp.branches[1:4]]
    assert tuple(dilations) == ASPP_RATES[os_] == tuple(r * 8 // os_ for r in (12, 24, 36))


def test_count_params_matches_numel():
    layer = torch.nn.Conv2d(3, 5, 3)
    assert count_params(layer) == 3 * 5 * 9 + 5
    layer.bias.requires_grad_(False)
    assert count_params(layer, trainable_only=True) == 3 * 5 * 9


def test_count_gflops_convolution_formula():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_gflops(conv, (10, 12)) * 1e9 == pytest.approx(2 * 3 * 8 * 9 * 10 * 12)


def test_count_gflops_adds_attention_flops():
    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gsa = G.GlobalSelfAttention()
            self.psa = G.PointwiseSelfAttention(2, kernel_size=3)

        def forward(self, x):  # (B, 3, H, W) -> reuse x as q, k and v with 2 heads
            b, _, h, w = x.shape
            t = x[:, :2, :, :, None].expand(b, 2, h, w, 4)
            return self.gsa(t, t, t) + self.psa(t, t, t)

    n = 6 * 5
    sdpa = 2 * 2 * n * n * (4 + 4)  # B=1, h=2
    local = 2 * 2 * n * 9 * (4 + 4)
    assert count_gflops(Attn(), (6, 5)) * 1e9 == pytest.approx(sdpa + local)
