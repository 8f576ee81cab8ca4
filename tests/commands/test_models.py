"""`gsag models`: parameters counted on the meta device match a real model; GFLOPs only with
--flops, and then equal to counting a real model. (`gsag models NAME`, also counted on the meta
device, is checked against a real model in tests/models/test_check.py.)"""

from __future__ import annotations

import pytest

NAMES = ["fcn", "gsag_hybrid", "upernet"]


def _real_model(name: str):
    import gsag

    return gsag.create_model(name, 3, backbone="test_resnet", aux=False)


def test_table_counts_parameters_without_running_a_forward_pass(monkeypatch):
    import gsag.flops
    from gsag.commands.models import model_table
    from gsag.flops import count_params

    def no_forward(*args, **kwargs):
        raise AssertionError("GFLOPs counted without --flops")

    monkeypatch.setattr(gsag.flops, "count_gflops", no_forward)
    rows = model_table("test_resnet", 64, 3, None, NAMES)
    assert [r["model"] for r in rows] == NAMES
    assert all("gflops" not in r for r in rows)
    for r in rows:  # the meta-device count equals the count of a real (CPU) model
        assert r["params_m"] * 1e6 == count_params(_real_model(r["model"]))


def test_table_with_flops_equals_counting_a_real_model():
    from gsag.commands.models import model_table, to_markdown
    from gsag.flops import count_gflops

    rows = model_table("test_resnet", 64, 3, None, NAMES, flops=True)
    for r in rows:
        assert r["gflops"] == pytest.approx(count_gflops(_real_model(r["model"]), 64))
    assert "GFLOPs @ 64x64" in to_markdown(rows, 64).splitlines()[0]
    assert "GFLOPs" not in to_markdown([{k: v for k, v in rows[0].items() if k != "gflops"}], 64)


def test_cli_table_has_gflops_only_with_flops(capsys):
    from gsag.cli import main

    args = ["models", "--backbone", "test_resnet", "--models", *NAMES, "--markdown"]
    assert main(args) == 0
    plain = capsys.readouterr().out.strip().splitlines()
    assert plain[0] == "| model | backbone | params (M) | output stride |"
    assert len(plain) == 2 + len(NAMES)
    assert main([*args, "--flops", "--size", "64"]) == 0
    with_flops = capsys.readouterr().out.strip().splitlines()
    assert with_flops[0].endswith("| GFLOPs @ 64x64 | output stride |")

    def without_gflops(line: str) -> list[str]:
        cells = line.strip("|").split("|")
        return cells[:3] + cells[4:]

    # the params and output stride columns are the same either way; each head's own stride
    assert [without_gflops(ln) for ln in with_flops[2:]] == [
        ln.strip("|").split("|") for ln in plain[2:]
    ]
    strides = {ln.strip("|").split("|")[0].strip(): ln.split("|")[-2].strip() for ln in plain[2:]}
    assert strides == {"fcn": "8", "gsag_hybrid": "8", "upernet": "32"}
