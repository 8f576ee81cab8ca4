"""The GSAG hybrid's ablation switches: each removes exactly its module and still trains."""

from __future__ import annotations

import pytest
import torch

import gsag
from gsag.models import gsag as G
from gsag.models.layers import ConvBNReLU

IN, D, DK, H = [8, 12, 16], 16, 8, 2
SMALL = dict(head_channels=D, key_channels=DK, num_heads=H, fuse_channels=8, dropout=0.0)


def head(**switches) -> G.GSAGHead:
    torch.manual_seed(0)
    return G.GSAGHead(IN, 3, "hybrid", **SMALL, **switches).eval()


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def feats(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, 6, 5, generator=g) for c in IN]


@pytest.mark.parametrize(
    "switch, removed",
    [("pointwise", ["psa", "gated"]), ("vector_mapping", ["pool", "mapping"]), ("gate", ["gated"])],
)
def test_switch_removes_exactly_its_modules(switch, removed):
    full, cut = head(), head(**{switch: False})
    assert all(not hasattr(cut, name) for name in removed)
    expected = sum(n_params(getattr(full, name)) for name in removed)
    assert expected > 0 and n_params(full) - n_params(cut) == expected


def test_no_group_formation_projects_c5_only():
    full, cut = head(), head(group_formation=False)
    assert not hasattr(cut, "group") and isinstance(cut.proj, ConvBNReLU)
    assert n_params(full) - n_params(cut) == n_params(full.group) - n_params(cut.proj)
    x, y = feats(1), feats(2)
    y[-1] = x[-1]  # other C3 and C4, the same C5: same output
    assert torch.allclose(cut(x), cut(y)) and not torch.allclose(full(x), full(y))


def _copy_shared(full: G.GSAGHead, cut: G.GSAGHead) -> None:
    missing, unexpected = cut.load_state_dict(full.state_dict(), strict=False)
    assert not missing and unexpected  # cut holds a subset of full's weights


def test_no_gate_is_the_fixed_average(monkeypatch):
    full, cut = head(), head(gate=False)
    _copy_shared(full, cut)
    monkeypatch.setattr(full.gated, "gate", lambda local, glob: torch.full_like(local, 0.5))
    assert torch.allclose(full(feats()), cut(feats()), atol=1e-6)


def test_no_mapping_drops_the_context_vector(monkeypatch):
    full, cut = head(), head(vector_mapping=False)
    _copy_shared(full, cut)
    monkeypatch.setattr(full.mapping, "forward", lambda qk, v: torch.zeros(()))
    assert torch.allclose(full(feats()), cut(feats()), atol=1e-6)


def test_pointwise_false_drops_the_local_branch_and_keeps_g_alone(monkeypatch):
    full, cut = head(), head(pointwise=False)
    _copy_shared(full, cut)
    monkeypatch.setattr(full.gated, "forward", lambda local, glob: glob)
    assert torch.allclose(full(feats()), cut(feats()), atol=1e-6)


def test_kernel_one_removes_only_the_pointwise_attention(monkeypatch):
    # a 1x1 window: every position attends to itself alone, so L = V; the gate stays
    full, cut = head(), head(kernel_size=1)
    assert hasattr(cut, "gated") and hasattr(cut, "gsa") and hasattr(cut, "mapping")
    shared = {k: v for k, v in full.state_dict().items() if k != "psa.rel_bias"}
    assert cut.load_state_dict(shared, strict=False).missing_keys == ["psa.rel_bias"]
    monkeypatch.setattr(full.psa, "forward", lambda q, k, v: v)
    assert torch.allclose(full(feats()), cut(feats()), atol=1e-6)


def test_no_global_attention_keeps_the_context_vector_as_g(monkeypatch):
    full, cut = head(), head(global_attention=False)
    assert not hasattr(cut, "gsa") and hasattr(cut, "gated") and hasattr(cut, "mapping")
    assert n_params(full) == n_params(cut)  # GSA has no weights of its own
    cut.load_state_dict(full.state_dict())
    monkeypatch.setattr(full.gsa, "forward", lambda q, k, v: torch.zeros_like(v))
    assert torch.allclose(full(feats()), cut(feats()), atol=1e-6)
    assert not torch.allclose(head()(feats()), cut(feats()), atol=1e-4)  # GSA did contribute


def test_no_global_context_at_all_is_the_local_branch_alone(monkeypatch):
    full, cut = head(), head(global_attention=False, vector_mapping=False)
    assert not any(hasattr(cut, n) for n in ("gsa", "pool", "mapping", "gated"))
    _copy_shared(full, cut)
    monkeypatch.setattr(full.gated, "forward", lambda local, glob: local)
    assert torch.allclose(full(feats()), cut(feats()), atol=1e-6)
    # no image-wide path is left: a change far away (another row) does not reach a pixel
    x = feats()
    y = [f.clone() for f in x]
    for f in y:
        f[:, :, -1] += 5.0  # the last row of every level changes
    cut_out_x, cut_out_y = cut(x), cut(y)
    assert torch.allclose(cut_out_x[:, :, 0], cut_out_y[:, :, 0], atol=1e-5)
    assert not torch.allclose(head()(x)[:, :, 0], head()(y)[:, :, 0], atol=1e-5)  # the full one


def test_a_hybrid_without_any_attention_is_refused():
    with pytest.raises(ValueError, match="no attention"):
        head(pointwise=False, global_attention=False, vector_mapping=False)


@pytest.mark.parametrize("kernel_size", [3, 7, 11])
def test_kernel_size_sets_the_neighbourhood(kernel_size):
    assert head(kernel_size=kernel_size).psa.rel_bias.shape == (H, kernel_size**2)


def test_switches_are_for_the_hybrid_only():
    with pytest.raises(ValueError, match="hybrid variant only"):
        G.GSAGHead(IN, 3, "incremental", **SMALL, gate=False)


@pytest.mark.parametrize(
    "switches",
    [
        {"group_formation": False},
        {"pointwise": False},
        {"vector_mapping": False},
        {"gate": False},
        {"global_attention": False},
        {"global_attention": False, "vector_mapping": False},
        {"group_formation": False, "kernel_size": 1},
    ],
)
def test_each_ablated_model_trains_a_step(switches):
    torch.manual_seed(0)
    model = gsag.create_model("gsag_hybrid", 3, backbone="test_resnet", **SMALL, **switches)
    model.train()
    before = [p.detach().clone() for p in model.head.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, target = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    loss = torch.nn.functional.cross_entropy(model(x)["out"], target)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    # every head parameter is reached by the loss (no dead module left behind); the step moves them
    assert all(p.grad is not None for p in model.head.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.head.parameters(), strict=True))
