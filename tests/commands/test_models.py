"""`gsag models`: parameters counted on the meta device match a real model; GFLOPs only with
--flops, and then equal to counting a real model. (`gsag models NAME`, also counted on the meta
device, is checked against a real model in tests/models/test_check.py.)"""

from __future__ import annotations

import pytest

from gsag.commands.models import USES

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


def test_the_table_loads_neither_timm_nor_the_torch_compiler():
    """`gsag models` answers from the model table and the heads alone: importing timm (which
    imports torchvision and torch._dynamo) and building eight ResNet-50s made it take 5-6 s of
    CPU on a quiet machine. Checked in a fresh interpreter, as a user runs it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from gsag.cli import main\n"
        "assert main(['models']) == 0\n"
        "print(sorted(m for m in ('timm', 'torchvision', 'torch._dynamo', 'torch._inductor') "
        "if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    import torch

    from gsag.flops import count_params
    from gsag.models import create_model

    with torch.device("meta"):  # the ResNet-50 table's hybrid row, counted on the whole model
        hybrid = count_params(create_model("gsag_hybrid", 21, backbone="resnet50", aux=False))
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in done.stdout.splitlines()]
    assert ["gsag_hybrid", "resnet50", f"{hybrid / 1e6:.2f}", "8"] in rows
    assert done.stdout.strip().splitlines()[-1] == "[]"


#: one way to give each option of `gsag models` (a default value would not count as given)
GIVEN = {
    "name": ["fcn"],
    "config": ["--config", "configs/demo.yaml"],
    "overrides": ["--set", "model.aux=false"],
    "backbone": ["--backbone", "resnet18"],
    "flops": ["--flops"],
    "size": ["--size", "256"],
    "num_classes": ["--num-classes", "3"],
    "output_stride": ["--output-stride", "16"],
    "backbones": ["--backbones", "convnext*"],
    "models": ["--models", "fcn"],
    "markdown": ["--markdown"],
}
#: the ways of using `gsag models`, each with the option that chooses it
WAYS = {"--backbones": "backbones", "NAME": "name", "--config": "config", "the table": None}
IGNORED = [
    (way, option)
    for way, chooser in WAYS.items()
    for option in GIVEN
    if option not in WAYS.values()  # giving one chooses another way (NAME + --config: refused)
    and option not in USES[way]
]


def test_every_option_is_read_by_some_way_and_given_in_the_table_above():
    from gsag.cli import build_parser

    options = {k for k in vars(build_parser().parse_args(["models"])) if not k.startswith("_")}
    options -= {"command", "debug"}  # gsag's own
    assert options == set(GIVEN) == set().union(*USES.values())


@pytest.mark.parametrize(("way", "option"), IGNORED)
def test_an_option_the_chosen_way_ignores_is_refused_not_ignored(way, option, capsys):
    """`gsag models fcn --set ...` printed fcn's defaults and dropped the --set (probe,
    2026-12-08); every option a way does not read is refused the same way."""
    from gsag.cli import main

    chooser = WAYS[way]
    rc = main(["models", *(GIVEN[chooser] if chooser else []), *GIVEN[option]])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: gsag models: ") and err.count("\n") == 1
    flag = "NAME" if option == "name" else GIVEN[option][0]
    assert f"{flag} has no effect with {way}" in err
