"""CUDA-only checks of the fast paths: bf16 and fp16 (GradScaler) training steps, compile.

Run with `pytest -m gpu tests/test_gpu.py` by hand: tools/gpu_check.sh leaves it out (its
whole-model compiles buy no number there; docs/bench.md). Skipped without CUDA.
"""

from __future__ import annotations

import math

import pytest
import torch

import gsag
from gsag.engine.compile import apply_compile, resolve_amp

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
MODELS = ["gsag_hybrid", "gsag_incremental", "deeplabv3"]


def build(name: str, aux: bool = True, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return gsag.create_model(name, 21, backbone="resnet18", aux=aux, **kwargs).cuda()


def test_amp_auto_is_bf16_on_a_gpu_that_supports_it():
    expected = "bf16" if torch.cuda.is_bf16_supported() else "none"
    assert resolve_amp("auto", "cuda") == expected


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("name", MODELS)
def test_mixed_precision_training_steps_are_finite_and_fit_a_batch(name, amp):
    model = build(name)
    x = torch.randn(2, 3, 128, 128, device="cuda")
    target = torch.randint(0, 21, (2, 128, 128), device="cuda")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    losses = []
    model.train()
    for _ in range(10):
        with torch.autocast("cuda", dtype=dtype):
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out["out"], target)
            loss = loss + 0.4 * torch.nn.functional.cross_entropy(out["aux"], target)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("mode", ["head", "model"])
def test_compiled_inference_matches_eager(mode, name="gsag_hybrid"):
    eager = build(name, aux=False).eval()
    compiled = apply_compile(build(name, aux=False).eval(), mode, dynamic=True)
    with torch.no_grad():
        for hw in [(128, 128), (96, 160)]:  # two sizes: dynamic shapes serve both
            x = torch.randn(2, 3, *hw, device="cuda")
            torch.testing.assert_close(compiled(x)["out"], eager(x)["out"], rtol=1e-3, atol=1e-3)


def test_compiled_training_step_matches_eager(mode="head"):  # the whole model: test_train.py
    # no dropout and no aux head (its dropout): compiled code draws its own random numbers
    x = torch.randn(2, 3, 128, 128, device="cuda")
    grads = []
    for compile_mode in ("none", mode):
        model = apply_compile(build("gsag_hybrid", aux=False, dropout=0.0), compile_mode)
        model.train()
        model(x)["out"].square().mean().backward()
        grads.append(
            torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        )
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4)
