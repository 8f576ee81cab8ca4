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
from gsag.errors import GsagError
from gsag.models import local_attention as la
from gsag.models.local_attention import (
    local_attention_reference,
    output_dtype,
    reference_backward,
    triton_available,
)
from gsag.models.local_attention_dispatch import local_attention, resolve_impl

ROOT = Path(__file__).resolve().parents[2]  # the repository
needs_triton = pytest.mark.skipif(not triton_available(), reason="needs triton")
needs_cuda = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    needs_triton,
]
GRADS = ("q", "k", "v", "rel_bias")


def _interpreter_drops_stores() -> bool:
    """Triton 3.0's interpreter writes nothing back under numpy 2 (its stores go to a copy)."""
    if not triton_available():
        return False
    import numpy
    import triton

    major_minor = tuple(int(p) for p in triton.__version__.split(".")[:2])
    return major_minor < (3, 1) and int(numpy.__version__.split(".")[0]) >= 2


interpreter_works = pytest.mark.skipif(
    _interpreter_drops_stores(), reason="Triton 3.0's interpreter with numpy 2"
)

# name: (B, h, H, W, dk, dv, kernel_size, strided); interpreted, so small: seconds each
CASES = {
    "borders_k3": (2, 2, 5, 7, 3, 5, 3, False),
    "one_row_k3": (2, 2, 1, 9, 4, 4, 3, False),
    "two_blocks_strided_k3": (2, 2, 9, 9, 5, 3, 3, True),
    "k7_window_over_image": (1, 1, 6, 5, 2, 6, 7, False),
    "k1": (2, 1, 3, 4, 3, 2, 1, False),
    "wide_heads_three_blocks_k3": (1, 1, 5, 7, 100, 72, 3, False),  # 16 pixels a block
}
# the kernels' int64-offset variant (WIDE), forced: the inputs that need it do not fit a test
WIDE_CASES = {"int64_offsets_strided_k5": (2, 3, 6, 7, 4, 6, 5, True)}
# q, k, v (and the output gradient) in 16 bits, the bias float32: the PSA under autocast
LOW_CASES = {"bf16": torch.bfloat16, "fp16": torch.float16}
LOW_SHAPE = (2, 2, 9, 7, 8, 6, 3, True)
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


def low_precision(case: dict, dtype: torch.dtype) -> dict:
    """The case with q, k, v and dout rounded to `dtype` (the bias stays float32)."""
    return {**case, **{n: case[n].to(dtype) for n in ("q", "k", "v", "dout")}}


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory) -> dict[str, dict]:
    """Every interpreted case in one subprocess (each start imports torch and triton)."""
    shapes = {**CASES, **WIDE_CASES}
    cases = {name: make_case(*shape, seed=i) for i, (name, shape) in enumerate(shapes.items())}
    for name in WIDE_CASES:
        cases[name]["wide"] = True
    for name, dtype in LOW_CASES.items():
        cases[name] = low_precision(make_case(*LOW_SHAPE, seed=len(cases)), dtype)
    return cases, run_interpreted(cases, tmp_path_factory.mktemp("interp"))


@pytest.mark.parametrize("name", [*CASES, *WIDE_CASES])
@interpreter_works
@needs_triton
def test_triton_interpreted_matches_reference(interpreted, name):
    cases, results = interpreted
    expected = forward_backward(local_attention_reference, cases[name])
    assert_all_close(results[name], expected, rtol=1e-5, atol=1e-5)
    # the kernel writes the channel-first layout the head reads (B, h, dv, H, W)
    assert results[name]["out"].permute(0, 1, 4, 2, 3).is_contiguous()


@pytest.mark.parametrize("name", list(LOW_CASES))
@interpreter_works
@needs_triton
def test_triton_interpreted_writes_16_bit_inputs_output_in_16_bits(interpreted, name):
    """bf16 / fp16 q, k, v with a float32 bias (as under autocast): the output is written in
    the inputs' dtype, the gradients in each input's; values within 16-bit rounding of the
    float32 reference on the same (rounded) inputs."""
    cases, results = interpreted
    low = cases[name]
    exact = {**low, **{n: low[n].float() for n in ("q", "k", "v", "dout")}}
    expected = forward_backward(local_attention_reference, exact)
    got = results[name]
    assert got["out"].dtype == LOW_CASES[name]
    for n in GRADS:
        assert got[n].dtype == low[n].dtype, n
    for n, value in expected.items():
        err = (got[n].float() - value).norm() / value.norm()
        assert err.item() < 2e-2, (n, err.item())


@pytest.mark.slow
@interpreter_works
@needs_triton
def test_triton_interpreted_matches_reference_larger(tmp_path):
    cases = {name: make_case(*shape, seed=i) for i, (name, shape) in enumerate(SLOW_CASES.items())}
    results = run_interpreted(cases, tmp_path)
    for name, case in cases.items():
        expected = forward_backward(local_attention_reference, case)
        assert_all_close(results[name], expected, rtol=1e-5, atol=1e-5)


AOT_VARIANTS = {  # name: benchmark_inputs arguments; the launches a GPU run would compile
    "bf16_in_fp32_out_d32_k7": dict(d=32, k=7, dtype=torch.bfloat16, out_dtype=torch.float32),
    "bf16_in_fp32_out_d64_k7": dict(d=64, k=7, dtype=torch.bfloat16, out_dtype=torch.float32),
    "bf16_d32_k7": dict(d=32, k=7, dtype=torch.bfloat16, out_dtype=torch.bfloat16),
    "fp32_d12_k3_odd_strides": dict(b=2, h=3, size=(9, 13), d=12, k=3, dtype=torch.float32,
                                    out_dtype=torch.float32),
    "fp16_d128_k9": dict(b=1, h=2, size=(33, 40), d=128, k=9, dtype=torch.float16,
                         out_dtype=torch.float32),
    "int64_offsets": dict(b=1, h=16, size=(2048, 4096), d=32, k=7, dtype=torch.bfloat16,
                          out_dtype=torch.float32),
}  # fmt: skip


@pytest.mark.slow
@needs_triton
@pytest.mark.parametrize("variant", list(AOT_VARIANTS))
def test_triton_kernels_compile_for_cuda_without_a_gpu(variant, monkeypatch, tmp_path):
    """The interpreter accepts code the CUDA compiler rejects: compile each kernel to an sm_90
    cubin with the types, 16-divisibility hints and constants of a real launch (autocast's
    bf16 in / fp32 out, the key layer's strided views, head sizes 32 and 64, k 7)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("kernels are interpreted in this process")
    from tests.helpers.triton_aot import benchmark_inputs, compile_launch, recorded_launches

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    inputs = benchmark_inputs(**AOT_VARIANTS[variant])
    calls = recorded_launches(inputs)
    assert calls["_fwd_kernel"][1]["WIDE"] == (variant == "int64_offsets")
    for name, (args, kwargs) in calls.items():
        assert compile_launch(name, args, kwargs).asm["cubin"], name


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
        "from gsag.models.local_attention import triton_available\n"
        "from gsag.models.local_attention_dispatch import local_attention\n"
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


@pytest.mark.parametrize(
    "qkv, bias, expected",
    [(torch.bfloat16, torch.float32, torch.bfloat16), (torch.float16, torch.float32, torch.float16),
     (torch.bfloat16, torch.bfloat16, torch.bfloat16), (torch.float32, torch.float32, torch.float32),
     (torch.float32, torch.bfloat16, torch.float32), (torch.float32, torch.float64, torch.float64),
     (torch.float64, torch.float32, torch.float64)],
)  # fmt: skip
def test_output_dtype_is_the_inputs_16_bit_dtype_else_the_promotion(qkv, bias, expected):
    """16-bit q, k, v (autocast's) give a 16-bit output whatever the bias's dtype: the
    reference's float32 would double the output's bytes."""
    q = torch.randn(1, 2, 4, 4, 4, dtype=qkv)
    assert output_dtype(q, q, q, torch.randn(2, 9, dtype=bias)) == expected


def test_output_dtype_with_mixed_inputs_is_their_promotion():
    q16, v32 = torch.randn(1, 2, 4, 4, 4, dtype=torch.bfloat16), torch.randn(1, 2, 4, 4, 4)
    bias = torch.zeros(2, 9, dtype=torch.bfloat16)
    assert output_dtype(q16, q16, v32, bias) == torch.float32
    assert output_dtype(q16, q16.half(), q16, bias) == torch.float32


@pytest.mark.parametrize("bias_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("autocast", [False, True])
def test_every_path_returns_output_dtype_on_cpu(bias_dtype, autocast):
    from gsag.models.local_attention_op import fused_local_attention

    q = torch.randn(1, 2, 4, 4, 4, dtype=torch.bfloat16)
    bias = torch.randn(2, 9, dtype=bias_dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        expected = output_dtype(q, q, q, bias)
        assert local_attention(q, q, q, bias, 3, impl="reference").dtype == expected
        assert fused_local_attention(q, q, q, bias, 3, fallback=True).dtype == expected


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
    assert got["out"].dtype == dtype  # written at the inputs' precision (the bias is float32)
    for name in GRADS:
        assert got[name].dtype == low[name].dtype, name
    for name in got:
        err = (got[name].float() - expected[name]).norm() / expected[name].norm()
        assert err.item() < 2e-2, name


@pytest.mark.parametrize("dev", [pytest.param("cuda", marks=needs_cuda)])
def test_triton_cuda_autocast_writes_bf16_close_to_the_reference(dev):
    case = strided_to(make_case(2, 2, 9, 9, 8, 8, 3), dev)
    args = [case[n] for n in GRADS]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        q, k, v = (torch.nn.functional.linear(x, torch.eye(8, device=dev)) for x in args[:3])
        got = local_attention(q, k, v, args[3], 3, impl="triton")
        expected = local_attention_reference(q, k, v, args[3], 3)  # float32 under autocast
    assert got.dtype == torch.bfloat16 and expected.dtype == torch.float32
    torch.testing.assert_close(got.float(), expected, rtol=1e-2, atol=1e-2)  # bf16 rounding


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
def test_auto_keeps_the_triton_op_when_compiled(dev):
    case = strided_to(make_case(2, 2, 9, 9, 8, 8, 3), dev)
    args = [case[n].requires_grad_(True) for n in GRADS]
    assert resolve_impl("auto", args[0]) == "triton"
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm

    compiled = torch.compile(lambda *a: local_attention(*a, 3), fullgraph=True, backend=backend)
    got = forward_backward(lambda *a: compiled(*a[:4]), case, dev)
    expected = forward_backward(local_attention_reference, case, dev)
    assert_all_close(got, expected, rtol=1e-5, atol=1e-5)
    assert op_nodes(graphs[0]) == [torch.ops.gsag.local_attention_fwd.default]
    inductor = torch.compile(lambda *a: local_attention(*a, 3), fullgraph=True)
    torch.testing.assert_close(inductor(*args), expected["out"], rtol=1e-5, atol=1e-5)


# ------------------------------------------------- the custom op, fallback and dispatch (CPU)


def op_nodes(gm: torch.fx.GraphModule) -> list:
    """The call_function targets of a graph that are not getitem."""
    import operator

    return [
        n.target
        for n in gm.graph.nodes
        if n.op == "call_function" and n.target is not operator.getitem
    ]


@pytest.mark.parametrize(
    "shape", [(2, 2, 5, 6, 3, 4, 3), (1, 3, 4, 1, 2, 5, 5), (2, 1, 3, 3, 4, 4, 1)]
)
def test_reference_backward_matches_autograd(shape):
    case = make_case(*shape, dtype=torch.float64)
    expected = forward_backward(local_attention_reference, case)
    args = [case[n] for n in GRADS]
    got = reference_backward(case["dout"], *args, case["kernel_size"])
    for name, g in zip(GRADS, got, strict=True):
        torch.testing.assert_close(g, expected[name], msg=name)
        assert g.is_contiguous() and g.dtype == case[name].dtype


def test_custom_op_passes_opcheck_on_cpu():
    from gsag.models import local_attention_op as op

    case = make_case(2, 2, 4, 5, 3, 4, 3, dtype=torch.float64)
    args = [case[n].requires_grad_(True) for n in GRADS]
    torch.library.opcheck(op.local_attention_fwd, (*args, 3, "float64", True))
    out, lse = op.local_attention_fwd(*[a.detach() for a in args], 3, "float64", True)
    plain = [a.detach() for a in args]
    torch.library.opcheck(
        op.local_attention_bwd,
        (case["dout"], *plain, out, lse, 3, True),
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )
    got = forward_backward(lambda *a: op.fused_local_attention(*a, fallback=True), case)
    assert_all_close(got, forward_backward(local_attention_reference, case))


def test_fused_op_output_is_channel_first_so_the_head_reads_it_without_a_copy():
    """The op returns (B, h, H, W, dv) stored as (B, h, dv, H, W), in its real and its fake
    implementation alike, so the head's `heads_to_map` after it is a view, not a copy."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from gsag.models import local_attention_op as op
    from gsag.models.gsag import heads_to_map

    case = make_case(2, 3, 4, 5, 3, 6, 3)
    args = [case[n] for n in GRADS]
    out = op.fused_local_attention(*args, 3, fallback=True)  # CPU: the reference inside the op
    torch.testing.assert_close(out, local_attention_reference(*args, 3))
    assert heads_to_map(out).data_ptr() == out.data_ptr()
    assert heads_to_map(out).is_contiguous()
    with FakeTensorMode() as mode:
        fake = op.fused_local_attention(*[mode.from_tensor(a) for a in args], 3, fallback=True)
    assert fake.stride() == out.stride()


def test_compiled_op_stays_one_node_with_its_backward_op():
    """torch.compile (CPU, aot_eager) keeps the op as one node in the forward graph and calls
    the backward op in the backward graph, with the reference's values and gradients."""
    from torch._dynamo.backends.common import aot_autograd

    from gsag.models.local_attention_op import fused_local_attention

    dynamo_graphs, aot_graphs = [], []

    def record(gm, _):
        aot_graphs.append(gm)
        return gm

    def backend(gm, example_inputs):
        dynamo_graphs.append(gm)
        return aot_autograd(fw_compiler=record, bw_compiler=record)(gm, example_inputs)

    case = make_case(2, 2, 4, 5, 3, 4, 3)
    fn = torch.compile(
        lambda *a: fused_local_attention(*a, 3, True), backend=backend, fullgraph=True
    )
    got = forward_backward(lambda *a: fn(*a[:4]), case)
    assert_all_close(got, forward_backward(local_attention_reference, case), rtol=1e-5, atol=1e-5)
    assert op_nodes(dynamo_graphs[0]) == [torch.ops.gsag.local_attention_fwd.default]
    forward_graph, backward_graph = aot_graphs
    assert torch.ops.gsag.local_attention_fwd.default in op_nodes(forward_graph)
    assert torch.ops.gsag.local_attention_bwd.default in op_nodes(backward_graph)
    assert not any("mul" in str(t) or "softmax" in str(t) for t in op_nodes(forward_graph))


class PTXASError(Exception):
    """Like Triton's compiler errors: an Exception, not a RuntimeError."""


@pytest.fixture
def broken_kernels(monkeypatch):
    """Pretend CPU tensors are kernel tensors whose Triton kernels fail to compile; counts calls."""
    pytest.importorskip("triton")
    from gsag.models import local_attention_triton as kernels

    calls = {"forward": 0, "backward": 0}

    def fail(which):
        def launcher(*args, **kwargs):
            calls[which] += 1
            raise PTXASError("ptxas fatal: Unresolved extern function 'boom'\nsecond line")

        return launcher

    monkeypatch.setattr(la, "_failure", [])
    monkeypatch.setattr(la, "kernel_device", lambda q: True)
    monkeypatch.setattr(kernels, "forward", fail("forward"))
    monkeypatch.setattr(kernels, "backward", fail("backward"))
    return calls


def test_auto_falls_back_to_the_reference_once_when_the_kernel_fails(broken_kernels):
    import warnings

    case = make_case(2, 2, 5, 6, 3, 4, 3)
    expected = forward_backward(local_attention_reference, case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = forward_backward(lambda *a: local_attention(*a, impl="auto"), case)
        second = forward_backward(lambda *a: local_attention(*a, impl="auto"), case)
    assert_all_close(first, expected, rtol=1e-6, atol=1e-6)
    assert_all_close(second, expected, rtol=1e-6, atol=1e-6)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert "PTXASError: ptxas fatal" in messages[0] and "report" in messages[0]
    assert "second line" not in messages[0]
    assert broken_kernels == {"forward": 1, "backward": 0}  # remembered: not tried again
    assert resolve_impl("auto", case["q"]) == "reference"
    assert "PTXASError" in la.kernel_failure()


def test_auto_falls_back_when_only_the_backward_kernel_fails(broken_kernels, monkeypatch):
    from gsag.models import local_attention_triton as kernels

    def forward(q, k, v, rel_bias, ks, out_dtype):  # a working forward
        out = local_attention_reference(q, k, v, rel_bias, ks).to(out_dtype)
        return out, q.new_zeros(q.shape[0] * q.shape[1], q.shape[2] * q.shape[3])

    monkeypatch.setattr(kernels, "forward", forward)
    case = make_case(1, 2, 4, 4, 3, 3, 3)
    with pytest.warns(RuntimeWarning, match="PTXASError"):
        got = forward_backward(lambda *a: local_attention(*a, impl="auto"), case)
    assert_all_close(got, forward_backward(local_attention_reference, case), rtol=1e-6, atol=1e-6)
    assert broken_kernels["backward"] == 1


def test_explicit_triton_kernel_failure_is_one_error_line(broken_kernels, monkeypatch):
    from gsag.errors import describe

    monkeypatch.setenv("TRITON_INTERPRET", "1")  # let the explicit path accept CPU tensors
    case = make_case(1, 1, 3, 3, 2, 2, 3)
    with pytest.raises(GsagError) as info:
        local_attention(*[case[n] for n in GRADS], 3, impl="triton")
    message, code = describe(info.value)
    assert code == 1 and "\n" not in message
    assert "PTXASError: ptxas fatal" in message and "attention_impl: auto or reference" in message
    assert la.kernel_failure() is None  # an explicit choice does not switch "auto"


def test_triton_out_of_resources_is_caught_too(broken_kernels, monkeypatch):
    from triton.runtime.errors import OutOfResources

    from gsag.models import local_attention_triton as kernels

    def out_of_resources(*args, **kwargs):
        raise OutOfResources(300000, 232448, "shared memory")

    monkeypatch.setattr(kernels, "forward", out_of_resources)
    case = make_case(1, 1, 3, 3, 2, 2, 3)
    with pytest.warns(RuntimeWarning, match="OutOfResources"):
        out = local_attention(*[case[n] for n in GRADS], 3)
    torch.testing.assert_close(out, local_attention_reference(*[case[n] for n in GRADS], 3))


def test_auto_takes_the_op_eagerly_and_compiled_but_the_reference_when_exporting(monkeypatch):
    """With kernel tensors, "auto" calls the op eagerly and under torch.compile, never during
    ONNX export (TorchScript) or torch.export, whose files must hold plain aten ops."""
    from gsag.models import local_attention_op as op

    monkeypatch.setattr(la, "kernel_device", lambda q: True)
    monkeypatch.setattr(la, "triton_available", lambda: True)
    seen = []
    monkeypatch.setattr(
        op,
        "fused_local_attention",
        lambda *a, **k: seen.append(1) or local_attention_reference(*a[:5]),
    )

    class PSA(torch.nn.Module):
        def forward(self, q):
            return local_attention(q, q, q, torch.zeros(2, 9), 3)

    q = torch.randn(1, 2, 4, 5, 3)
    PSA()(q)
    assert seen == [1]
    torch.compile(PSA(), backend="eager", fullgraph=True)(q)
    assert seen == [1, 1]
    torch.onnx.export(PSA(), (q,), str(Path(os.devnull)), dynamo=False)
    assert seen == [1, 1]
    if hasattr(torch.compiler, "is_exporting"):  # torch >= 2.5 tells export from compile
        torch.export.export(PSA(), (q,))
        assert seen == [1, 1]


def test_grid_puts_pixel_blocks_on_axis_0_and_wide_offsets_switch_to_int64():
    pytest.importorskip("triton")
    from gsag.models.local_attention_triton import grid, needs_int64

    q = torch.empty(2, 3, 300, 500, 4)
    assert grid(q, 64) == (-(-300 * 500 // 64), 6)
    small = torch.empty(1, 1, 8, 8, 4)
    assert not needs_int64(small)
    # a (B, H, W, h, d) buffer viewed as (B, h, H, W, d): 2**32 elements per batch element
    big = torch.empty(0, device="meta").as_strided((1, 16, 2048, 4096, 32), (0, 32, 2**21, 512, 1))
    assert needs_int64(big)
    assert not needs_int64(big[:, :, :1000])  # offsets below 2**31
    assert la.fits_kernels(q) and not la.fits_kernels(torch.empty(70000, 1, 1, 1, 1, device="meta"))


def contiguous_meta(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def test_int64_guard_counts_the_head_offset_the_kernels_multiply_in_int32():
    """A contiguous (B, h, H, W, d) input whose planes are each below 2**31 elements but whose
    heads together are not: head * head stride overflows int32 unless the kernels go WIDE."""
    pytest.importorskip("triton")
    from gsag.models.local_attention_triton import needs_int64

    big = contiguous_meta(1, 16, 2048, 4096, 32)  # a plane 2**28, head 15 at 15 * 2**28
    assert sum((n - 1) * s for n, s in zip(big.shape[2:], big.stride()[2:], strict=True)) < 2**31
    assert 15 * big.stride(1) >= 2**31
    assert needs_int64(big)
    assert not needs_int64(contiguous_meta(2, 8, 1024, 2048, 32))  # 2**29 per batch element
    assert not needs_int64(contiguous_meta(1, 2, 64, 64, 2**18))  # last offset 2**31 - 1
    assert needs_int64(contiguous_meta(1, 3, 64, 64, 2**18))  # head 2 starts at 2**31
    assert la.fits_kernels(big)  # so an explicit "triton" runs the kernels on it


def test_explicit_triton_on_an_int32_overflowing_shape_launches_the_int64_variant():
    """The launches `impl="triton"` makes (its forward and backward, recorded on meta tensors,
    no memory) take WIDE for contiguous inputs whose head offsets pass 2**31, and not for a
    smaller shape."""
    pytest.importorskip("triton")
    from tests.helpers.triton_aot import benchmark_inputs, recorded_launches

    def wide_flags(inputs):
        return {name: kw["WIDE"] for name, (_, kw) in recorded_launches(inputs).items()}

    inputs = benchmark_inputs(b=1, h=16, size=(2048, 4096), d=32, k=7)
    for n in ("q", "k", "v"):
        inputs[n] = contiguous_meta(*inputs[n].shape).to(inputs[n].dtype)
    assert wide_flags(inputs) == dict.fromkeys(
        ("_fwd_kernel", "_bwd_query_kernel", "_bwd_key_kernel"), True
    )
    small = benchmark_inputs(b=1, h=16, size=(256, 256), d=32, k=7)
    assert set(wide_flags(small).values()) == {False}


def test_auto_runs_float64_cuda_inputs_on_the_reference(monkeypatch):
    """The kernels compute in float32: under "auto", float64 kernel-device inputs take the
    reference (float64), not the op; float32 ones take the op."""
    from gsag.models import local_attention_op as op

    monkeypatch.setattr(la, "kernel_device", lambda q: True)
    monkeypatch.setattr(la, "triton_available", lambda: True)
    monkeypatch.setattr(la, "_failure", [])
    seen = []
    monkeypatch.setattr(
        op, "fused_local_attention", lambda *a, **k: seen.append(a[0].dtype) or a[2]
    )
    case = make_case(1, 2, 4, 5, 3, 3, 3, dtype=torch.float64)
    args = [case[n] for n in GRADS]
    assert resolve_impl("auto", args[0]) == "reference"
    out = local_attention(*args, 3)
    assert seen == [] and out.dtype == torch.float64
    assert torch.equal(out, local_attention_reference(*args, 3))
    bias64 = [a.float() for a in args[:3]] + [args[3]]  # a float64 bias: reference too
    assert resolve_impl("auto", *bias64) == "reference"
    local_attention(*[a.float() for a in args], 3)
    assert seen == [torch.float32]


def test_explicit_triton_refuses_float64(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # past the CUDA check on CPU tensors
    case = make_case(1, 2, 4, 5, 3, 3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"float64.*attention_impl='reference'"):
        local_attention(*[case[n] for n in GRADS], 3, impl="triton")
