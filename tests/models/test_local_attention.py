"""Local attention: every implementation against the reference shift loop, and the dispatcher.

The Triton kernels run on CPU under the Triton interpreter, in a subprocess (the variable
must be set before triton decorates the kernels), at small sizes; the gpu tests run the real
thing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gsag
from gsag.models.local_attention import (
    benchmark_local_attention,
    local_attention,
    local_attention_reference,
    output_dtype,
    resolve_impl,
    triton_available,
)

ROOT = Path(__file__).resolve().parents[2]  # the repository
needs_triton = pytest.mark.skipif(not triton_available(), reason="needs triton")
needs_cuda = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    needs_triton,
]
GRADS = ("q", "k", "v", "rel_bias")

# name: (B, h, H, W, dk, dv, kernel_size, strided); interpreted, so small: seconds each
CASES = {
    "borders_k3": (2, 2, 5, 7, 3, 5, 3, False),
    "one_row_k3": (2, 2, 1, 9, 4, 4, 3, False),
    "two_blocks_strided_k3": (2, 2, 9, 9, 5, 3, 3, True),
    "k7_window_over_image": (1, 1, 6, 5, 2, 6, 7, False),
    "k1": (2, 1, 3, 4, 3, 2, 1, False),
    "wide_heads_three_blocks_k3": (1, 1, 5, 7, 100, 72, 3, False),  # 16 pixels a block
}
SLOW_CASES = {
    "k9_5x33": (2, 1, 5, 33, 8, 6, 9, True),
    "k7_33x5": (1, 2, 33, 5, 3, 5, 7, False),
    "k11_1x1": (2, 2, 1, 1, 4, 4, 11, False),
    "k5_1x33": (2, 3, 1, 33, 7, 9, 5, False),
}


def make_case(b, h, hh, ww, dk, dv, ks, strided=False, seed=0, dtype=torch.float32) -> dict:
    """Random inputs (and an output gradient) for one case."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(dtype)

    return {
        "q": rand(b, h, hh, ww, dk),
        "k": rand(b, h, hh, ww, dk),
        "v": rand(b, h, hh, ww, dv),
        "rel_bias": rand(h, ks * ks),
        "dout": rand(b, h, hh, ww, dv),
        "kernel_size": ks,
        "strided": strided,
    }


def forward_backward(fn, case: dict, device: str = "cpu", dtype=None) -> dict:
    """{"out", "q", "k", "v", "rel_bias"}: fn's output and input gradients for the case."""
    inputs = [case[n].to(device, dtype).requires_grad_(True) for n in GRADS]
    out = fn(*inputs, case["kernel_size"])
    grads = torch.autograd.grad(out, inputs, case["dout"].to(device, out.dtype))
    return {"out": out.detach(), **dict(zip(GRADS, grads, strict=True))}


def assert_all_close(got: dict, expected: dict, **tol) -> None:
    for name, value in expected.items():
        torch.testing.assert_close(got[name].cpu(), value.cpu(), msg=name, **tol)


def run_interpreted(cases: dict[str, dict], tmp: Path) -> dict[str, dict]:
    """Run the Triton implementation on `cases` under TRITON_INTERPRET=1 in a subprocess."""
    torch.save(cases, tmp / "cases.pt")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    script = ["-m", "tests.helpers.triton_interpret"]  # run from the repository root
    proc = subprocess.run(
        [sys.executable, *script, str(tmp / "cases.pt"), str(tmp / "results.pt")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(tmp / "results.pt", weights_only=True)


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory) -> dict[str, dict]:
    cases = {name: make_case(*shape, seed=i) for i, (name, shape) in enumerate(CASES.items())}
    return cases, run_interpreted(cases, tmp_path_factory.mktemp("interp"))


@needs_triton
@pytest.mark.parametrize("name", list(CASES))
def test_triton_interpreted_matches_reference(interpreted, name):
    cases, results = interpreted
    expected = forward_backward(local_attention_reference, cases[name])
    assert_all_close(results[name], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@needs_triton
def test_triton_interpreted_matches_reference_larger(tmp_path):
    cases = {name: make_case(*shape, seed=i) for i, (name, shape) in enumerate(SLOW_CASES.items())}
    results = run_interpreted(cases, tmp_path)
    for name, case in cases.items():
        expected = forward_backward(local_attention_reference, case)
        assert_all_close(results[name], expected, rtol=1e-5, atol=1e-5)


def kernel_signature(kernel, ptr_type: str, constants: dict) -> tuple[dict, dict]:
    """Triton signature and constexprs of one kernel: pointers before the strides, ints after."""
    names = kernel.arg_names
    sig, consts = {}, {}
    for i, n in enumerate(names):
        if n in constants:
            sig[n], consts[(i,)] = "constexpr", constants[n]
        elif i < names.index("sqb"):
            sig[n] = (
                ptr_type if n in ("Q", "K", "V", "DOUT", "OUT", "DQ", "DK_", "DV_") else "*fp32"
            )
        else:
            sig[n] = "fp32" if n == "scale" else "i32"
    return sig, consts


@pytest.mark.slow
@needs_triton
@pytest.mark.parametrize("dtype, dk, ks", [("*fp32", 12, 3), ("*bf16", 32, 7), ("*fp16", 128, 9)])
def test_triton_kernels_compile_for_cuda_without_a_gpu(dtype, dk, ks, monkeypatch, tmp_path):
    """The interpreter accepts code the CUDA compiler rejects: compile to a cubin for sm_90."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("kernels are interpreted in this process")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile

    from gsag.models import local_attention_triton as kernels

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    dkp = triton.next_power_of_2(dk)  # head sizes are padded to powers of two
    constants = {"KS": ks, "BLOCK": max(16, min(64, 2048 // dkp)), "DKP": dkp, "DVP": dkp}
    for kernel in (kernels._fwd_kernel, kernels._bwd_query_kernel, kernels._bwd_key_kernel):
        sig, consts = kernel_signature(kernel, dtype, constants)
        compiled = compile(ASTSource(kernel, sig, consts), target=GPUTarget("cuda", 90, 32))
        assert compiled.asm["cubin"]


@pytest.mark.parametrize(
    "hh, ww, ks", [(1, 1, 3), (1, 33, 9), (5, 9, 7), (33, 5, 3), (5, 5, 9), (5, 1, 1)]
)
def test_reference_matches_naive_with_grads(hh, ww, ks, naive_local_attention):
    case = make_case(2, 3, hh, ww, 3, 5, ks, seed=hh * ww + ks, dtype=torch.float64)
    got = forward_backward(local_attention_reference, case)
    expected = forward_backward(naive_local_attention, case)
    assert_all_close(got, expected)


def test_auto_runs_the_reference_on_cpu():
    case = make_case(2, 2, 5, 6, 3, 4, 3)
    assert resolve_impl("auto", case["q"]) == "reference"
    args = [case[n] for n in GRADS]
    assert torch.equal(local_attention(*args, 3), local_attention_reference(*args, 3))


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    case = make_case(1, 1, 3, 3, 2, 2, 3)
    with pytest.raises(RuntimeError, match="attention_impl='triton' needs"):
        local_attention(*[case[n] for n in GRADS], 3, impl="triton")


@pytest.mark.parametrize(
    "change",
    [{"k": torch.zeros(1, 2, 3, 4, 5)}, {"v": torch.zeros(1, 2, 4, 3, 2)},
     {"rel_bias": torch.zeros(2, 8)}, {"kernel_size": 4}],
)  # fmt: skip
def test_triton_rejects_inputs_that_do_not_fit(change):
    case = make_case(1, 2, 3, 4, 2, 2, 3)
    args = {n: case[n] for n in GRADS} | {"kernel_size": 3} | change
    with pytest.raises(ValueError, match="local attention inputs do not fit"):
        local_attention(**args, impl="triton")


def test_bad_impl_is_a_clear_error():
    case = make_case(1, 1, 3, 3, 2, 2, 3)
    with pytest.raises(ValueError, match=r"attention_impl='fast'.*auto, reference, triton"):
        local_attention(*[case[n] for n in GRADS], 3, impl="fast")
    with pytest.raises(ValueError, match="attention_impl='fast'"):
        gsag.create_model("gsag_hybrid", 3, backbone="test_resnet", attention_impl="fast")


def test_attention_impl_is_a_head_option():
    assert "attention_impl" in gsag.models.head_defaults("gsag_hybrid")
    model = gsag.create_model(
        "gsag_incremental", 3, backbone="test_resnet", attention_impl="reference"
    )
    assert model.head.psa.impl == "reference"
    assert model.model_args["attention_impl"] == "reference"


def test_imports_and_runs_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, gsag\n"
        "from gsag.models.local_attention import local_attention, triton_available\n"
        "assert not triton_available()\n"
        "q = torch.randn(1, 2, 4, 4, 3)\n"
        "local_attention(q, q, q, torch.zeros(2, 9), 3)\n"
        "try:\n"
        "    local_attention(q, q, q, torch.zeros(2, 9), 3, impl='triton')\n"
        "except RuntimeError as e:\n"
        "    assert 'needs the triton package' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("bias_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("autocast", [False, True])
def test_output_dtype_follows_the_reference_on_cpu(bias_dtype, autocast):
    q = torch.randn(1, 2, 4, 4, 4, dtype=torch.bfloat16)
    bias = torch.randn(2, 9, dtype=bias_dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        assert output_dtype(q, q, q, bias) == local_attention_reference(q, q, q, bias, 3).dtype


# ---------------------------------------------------------------------------- gpu tests

GPU_CASES = [
    (2, 2, 33, 33, 3, 5, 9, False),
    (2, 3, 5, 33, 8, 6, 7, True),
    (2, 8, 64, 64, 32, 32, 7, True),
    (1, 2, 1, 1, 4, 4, 3, False),
    (2, 2, 17, 9, 16, 12, 11, False),
    (2, 2, 9, 9, 4, 4, 1, False),
]


def strided_to(case: dict, device: str, dtype=None) -> dict:
    """The case on `device`; strided inputs become (b, h, y, x) views of (B, H, W, h, d)."""
    out = dict(case)
    for n in ("q", "k", "v", "dout"):
        x = case[n].to(device, dtype)
        out[n] = (
            x.permute(0, 2, 3, 1, 4).contiguous().permute(0, 3, 1, 2, 4) if case["strided"] else x
        )
    out["rel_bias"] = case["rel_bias"].to(device)
    return out


@pytest.mark.parametrize("shape", GPU_CASES)
@pytest.mark.parametrize("dev", [pytest.param("cuda", marks=needs_cuda)])
def test_triton_cuda_float32_matches_reference(shape, dev):
    case = strided_to(make_case(*shape), dev)
    got = forward_backward(lambda *a: local_attention(*a, impl="triton"), case, dev)
    expected = forward_backward(local_attention_reference, case, dev)
    assert_all_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("dev", [pytest.param("cuda", marks=needs_cuda)])
def test_triton_cuda_low_precision_close_to_float32(dtype, dev):
    case = strided_to(make_case(2, 4, 40, 24, 16, 16, 7, True), dev)
    low = {**case, **{n: case[n].to(dtype) for n in ("q", "k", "v", "dout")}}
    got = forward_backward(lambda *a: local_attention(*a, impl="triton"), low, dev)
    expected = forward_backward(local_attention_reference, case, dev)
    assert got["out"].dtype == local_attention_reference(*[low[n] for n in GRADS], 7).dtype
    for name in GRADS:
        assert got[name].dtype == low[name].dtype, name
    for name in got:
        err = (got[name].float() - expected[name]).norm() / expected[name].norm()
        assert err.item() < 2e-2, name


@pytest.mark.parametrize("dev", [pytest.param("cuda", marks=needs_cuda)])
def test_triton_cuda_autocast_output_dtype_matches_reference(dev):
    case = strided_to(make_case(2, 2, 9, 9, 8, 8, 3), dev)
    args = [case[n] for n in GRADS]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        q, k, v = (torch.nn.functional.linear(x, torch.eye(8, device=dev)) for x in args[:3])
        got = local_attention(q, k, v, args[3], 3, impl="triton")
        expected = local_attention_reference(q, k, v, args[3], 3)
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=1e-2, atol=1e-2)


def hybrid_grads(impl: str, dev: str) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(0)
    small = dict(head_channels=32, key_channels=24, num_heads=2, kernel_size=7, dropout=0.0)
    model = gsag.create_model(
        "gsag_hybrid", 5, backbone="test_resnet", attention_impl=impl, **small
    ).to(dev)
    x = torch.randn(2, 3, 64, 48, device=dev, generator=torch.Generator(dev).manual_seed(1))
    out = model(x)
    (out["out"].square().mean() + out["aux"].square().mean()).backward()
    return out["out"].detach(), {
        n: p.grad for n, p in model.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize("dev", [pytest.param("cuda", marks=needs_cuda)])
def test_hybrid_forward_backward_triton_matches_reference(dev, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # exact convolutions
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    out_t, grads_t = hybrid_grads("triton", dev)
    out_r, grads_r = hybrid_grads("reference", dev)
    torch.testing.assert_close(out_t, out_r, rtol=1e-4, atol=1e-4)
    assert grads_t.keys() == grads_r.keys() and "head.psa.rel_bias" in grads_t
    for name, g in grads_r.items():
        torch.testing.assert_close(grads_t[name], g, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize("dev", [pytest.param("cuda", marks=needs_cuda)])
def test_auto_uses_triton_eagerly_and_reference_when_compiled(dev):
    case = strided_to(make_case(2, 2, 9, 9, 8, 8, 3), dev)
    args = [case[n] for n in GRADS]
    assert resolve_impl("auto", args[0]) == "triton"
    compiled = torch.compile(lambda *a: local_attention(*a, 3), fullgraph=True)
    expected = local_attention_reference(*args, 3)
    torch.testing.assert_close(compiled(*args), expected, rtol=1e-5, atol=1e-5)


def test_benchmark_reports_each_implementation_on_cpu():
    small = dict(batch=1, heads=2, size=(5, 4), head_dim=3, kernel_size=3, dtype=torch.float32)
    rows = benchmark_local_attention(**small, device="cpu", impls=("reference",), min_run_time=0.01)
    assert list(rows) == ["reference"]
    assert set(rows["reference"]) == {"forward_ms", "forward_backward_ms"}
    assert all(t > 0 for t in rows["reference"].values())


@pytest.mark.parametrize("dev", [pytest.param("cuda", marks=needs_cuda)])
def test_benchmark_on_cuda_reports_peak_memory(dev):
    rows = benchmark_local_attention(batch=1, heads=2, size=(16, 16), min_run_time=0.05)
    assert set(rows) == {"reference", "triton"}
    assert all(row["peak_mib"] > 0 for row in rows.values())
