"""Run the Triton local attention on CPU tensors under the Triton interpreter.

Usage, from the repository root:
    TRITON_INTERPRET=1 python -m tests.helpers.triton_interpret CASES.pt RESULTS.pt
CASES.pt holds {name: {"q", "k", "v", "rel_bias", "dout", "kernel_size", "strided"}} (and
optionally "wide"); for each case RESULTS.pt gets {"out", "q", "k", "v", "rel_bias"}: the output
and the input gradients. With "strided", q, k, v and dout are passed as non-contiguous
(b, h, y, x) views, the layout the key layer returns; with "wide", the kernels take their
int64-offset variant (`WIDE`, chosen by `needs_int64` for inputs too large to test here). Runs
in its own process because the variable must be set before triton decorates the kernels.
"""

from __future__ import annotations

import contextlib
import sys
from unittest import mock

import torch

from gsag.models.local_attention_dispatch import local_attention


def heads_last(x: torch.Tensor) -> torch.Tensor:
    """The same values as x (B, h, H, W, d), stored as (B, H, W, h, d)."""
    return x.permute(0, 2, 3, 1, 4).contiguous().permute(0, 3, 1, 2, 4)


def run_case(case: dict) -> dict:
    """Forward and backward of the Triton implementation on one case."""
    names = ("q", "k", "v", "rel_bias")
    layout = heads_last if case["strided"] else torch.Tensor.clone
    inputs = {n: (case[n] if n == "rel_bias" else layout(case[n])) for n in names}
    for t in inputs.values():
        t.requires_grad_(True)
    from gsag.models import local_attention_triton as kernels

    wide = mock.patch.object(kernels, "needs_int64", lambda *tensors: True)
    with wide if case.get("wide") else contextlib.nullcontext():
        out = local_attention(*inputs.values(), case["kernel_size"], impl="triton")
        grads = torch.autograd.grad(out, list(inputs.values()), layout(case["dout"]))
    return {"out": out.detach(), **dict(zip(names, grads, strict=True))}


def main(cases_path: str, results_path: str) -> None:
    cases = torch.load(cases_path, weights_only=True)
    torch.save({name: run_case(case) for name, case in cases.items()}, results_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
