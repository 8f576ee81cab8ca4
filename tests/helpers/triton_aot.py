"""Compile the local-attention kernels ahead of time for a CUDA target, without a GPU.

The launches are recorded from `forward` / `backward` of `gsag.models.local_attention_triton`
on meta tensors, so each compile sees the argument types, 16-divisibility hints and
constexprs a real launch at those shapes would give the JIT (pointers 16-byte aligned; ints
divisible by 16 get the hint; ints equal to 1 become constants, as Triton specializes them).

    python -m tests.helpers.triton_aot      # instruction counts and registers, sm_90 SASS
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import torch

TRITON_TYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
KERNELS = ("_fwd_kernel", "_bwd_query_kernel", "_bwd_key_kernel")


def benchmark_inputs(
    b=8, h=8, size=(64, 64), d=32, k=7, dtype=torch.bfloat16, out_dtype=torch.float32
) -> dict:
    """Meta tensors as the key layer hands them over: (b, h, y, x) views of (B, H, W, h, d)."""

    def heads_last(dt):
        return torch.empty(b, *size, h, d, device="meta", dtype=dt).permute(0, 3, 1, 2, 4)

    q, key, v = heads_last(dtype), heads_last(dtype), heads_last(dtype)
    bias = torch.empty(h, k * k, device="meta")
    return dict(q=q, k=key, v=v, rel_bias=bias, kernel_size=k, out_dtype=out_dtype)


def recorded_launches(inputs: dict) -> dict[str, tuple[tuple, dict]]:
    """{kernel name: (positional args, keyword args)} of one forward and one backward."""
    from gsag.models import local_attention_triton as kernels

    calls: dict[str, tuple[tuple, dict]] = {}

    def recorder(name):
        class Launch:
            def __getitem__(self, grid):
                return lambda *args, **kwargs: calls.__setitem__(name, (args, kwargs))

        return Launch()

    with ExitStack() as stack:
        for name in KERNELS:
            stack.enter_context(mock.patch.object(kernels, name, recorder(name)))
        out, lse = kernels.forward(**inputs)
        args = (inputs[n] for n in ("q", "k", "v", "rel_bias"))
        kernels.backward(out, *args, out, lse, inputs["kernel_size"])  # dout: out's dtype
    return calls


def compile_launch(name: str, args: tuple, kwargs: dict, arch: int = 90):
    """Compile one recorded launch for sm_`arch`; returns Triton's compiled kernel."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from gsag.models import local_attention_triton as kernels

    kernel = getattr(kernels, name)
    values = dict(zip(kernel.arg_names, args, strict=False)) | kwargs
    constexpr = {p.name for p in kernel.params if p.is_constexpr}
    sig, consts, attrs = {}, {}, {}
    for i, arg in enumerate(kernel.arg_names):
        value = values[arg]
        if arg in constexpr or (type(value) is int and value == 1):
            sig[arg], consts[(i,)] = "constexpr", value
        elif isinstance(value, torch.Tensor):
            sig[arg], attrs[(i,)] = f"*{TRITON_TYPES[value.dtype]}", [["tt.divisibility", 16]]
        elif isinstance(value, float):
            sig[arg] = "fp32"
        else:
            sig[arg] = "i64" if abs(value) >= 2**31 else "i32"
            if value % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    source = ASTSource(kernel, sig, consts, attrs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32))


def loop_body(sass: str) -> list[str]:
    """The instructions of the longest backward-branching loop (the neighbour loop) in SASS as
    Triton prints it (`LBB0:` labels, `--:-:-:-:1  OPCODE ...` instructions)."""
    lines = sass.splitlines()
    labels = {
        m.group(1): i for i, ln in enumerate(lines) if (m := re.match(r"(\w+):$", ln.strip()))
    }
    best = (0, 0)
    for i, ln in enumerate(lines):
        m = re.search(r"\bBRA (\w+);", ln)
        if m and labels.get(m.group(1), i) < i and i - labels[m.group(1)] > best[1] - best[0]:
            best = (labels[m.group(1)], i)
    return instructions("\n".join(lines[best[0] + 1 : best[1] + 1]))


def instructions(sass: str) -> list[str]:
    """All instructions of a kernel's SASS (the same line format as `loop_body`)."""
    return [ln for ln in sass.splitlines() if re.match(r"[-\w]+:\S*\t\S", ln)]


def registers(cubin: bytes) -> tuple[int, int]:
    """(registers per thread, stack bytes: spills) of a cubin, from the cuobjdump that ships
    with Triton's NVIDIA backend."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True)
    reg, stack = (re.search(rf"{key}:(\d+)", usage.stdout) for key in ("REG", "STACK"))
    assert reg and stack, usage.stdout + usage.stderr
    return int(reg.group(1)), int(stack.group(1))


def instruction_counts(inputs: dict | None = None, arch: int = 90) -> dict[str, dict[str, int]]:
    """Per kernel at the benchmark shapes: SASS instructions in the neighbour-loop body and in
    the whole kernel, registers per thread and stack bytes."""
    calls = recorded_launches(inputs or benchmark_inputs())
    counts = {}
    for name in KERNELS:
        compiled = compile_launch(name, *calls[name], arch).asm
        reg, stack = registers(compiled["cubin"])
        sass = compiled["sass"]
        counts[name] = dict(
            loop=len(loop_body(sass)), kernel=len(instructions(sass)), registers=reg, stack=stack
        )
    return counts


if __name__ == "__main__":
    for d in (32, 64):
        print(f"head size {d}:", instruction_counts(benchmark_inputs(d=d)))
