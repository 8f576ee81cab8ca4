"""The shared model harness: every model on a tiny backbone gets the same checks.

A new model is tested by adding one small subclass of `ModelHarness` naming it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gsag

BACKBONE = "test_resnet"  # ~0.4 M parameters, random init
NUM_CLASSES = 5
SMALL = dict(head_channels=32, key_channels=16, num_heads=2, kernel_size=3, fuse_channels=16)


class ModelHarness:
    """Checks every model must pass. Subclasses set `name` and optionally `kwargs`."""

    name: str = ""
    kwargs: dict = {}  # noqa: RUF012 - overridden per subclass, never mutated

    def build(self, **overrides) -> nn.Module:
        torch.manual_seed(0)
        args = dict(backbone=BACKBONE, **self.kwargs)
        args.update(overrides)
        return gsag.create_model(self.name, NUM_CLASSES, **args)

    def prepare_for_grad(self, model: nn.Module) -> None:
        """Move zero-initialised scales off zero so every parameter gets a gradient."""

    @pytest.mark.parametrize("size", [(37, 53), (64, 64), (33, 17)])
    def test_shapes_any_size(self, size):
        model = self.build()
        x = torch.randn(2, 3, *size)
        model.train()
        out = model(x)
        assert set(out) == {"out", "aux"}
        assert out["out"].shape == (2, NUM_CLASSES, *size)
        assert out["aux"].shape == (2, NUM_CLASSES, *size)
        model.eval()
        with torch.no_grad():
            out = model(x)
        assert set(out) == {"out"}
        assert out["out"].shape == (2, NUM_CLASSES, *size)

    def test_no_aux_head_when_disabled(self):
        model = self.build(aux=False).train()
        assert model.aux_head is None
        assert set(model(torch.randn(2, 3, 32, 32))) == {"out"}

    def test_backward_reaches_every_parameter(self):
        model = self.build().train()
        self.prepare_for_grad(model)
        x = torch.randn(2, 3, 41, 35)
        target = torch.randint(0, NUM_CLASSES, (2, 41, 35))
        out = model(x)
        loss = nn.functional.cross_entropy(out["out"], target)
        loss = loss + 0.4 * nn.functional.cross_entropy(out["aux"], target)
        loss.backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
            # timm zero-initialises the last BN of each residual block, which leaves some
            # backbone weights with zero gradients at init; head weights must all get one.
            if not pname.startswith("backbone."):
                assert p.grad.abs().sum() > 0, f"{pname} got an all-zero gradient"

    def test_eval_deterministic_and_batch_independent(self):
        model = self.build().eval()
        x = torch.randn(3, 3, 45, 39)
        with torch.no_grad():
            a = model(x)["out"]
            b = model(x)["out"]
            single = model(x[1:2])["out"]
        assert torch.equal(a, b)
        torch.testing.assert_close(single, a[1:2], rtol=1e-4, atol=1e-4)

    def test_rebuild_from_model_args(self):
        model = self.build().eval()
        assert model.model_args["name"] == self.name
        twin = gsag.create_model(**model.model_args).eval()
        twin.load_state_dict(model.state_dict())
        x = torch.randn(1, 3, 40, 40)
        with torch.no_grad():
            torch.testing.assert_close(twin(x)["out"], model(x)["out"])

    def test_torch_export(self):
        model = self.build(aux=False).eval()
        x = torch.randn(1, 3, 48, 40)
        exported = torch.export.export(model, (x,))
        with torch.no_grad():
            expected = model(x)["out"]
            got = exported.module()(x)["out"]
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize(
        "device",
        [
            "cpu",
            pytest.param(
                "cuda",
                marks=[
                    pytest.mark.gpu,
                    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
                ],
            ),
        ],
    )
    def test_autocast_close_to_float32(self, device):
        model = self.build().to(device).eval()
        x = torch.randn(2, 3, 32, 24, device=device)
        with torch.no_grad():
            ref = model(x)["out"]
            with torch.autocast(device, dtype=torch.bfloat16):
                low = model(x)["out"]
        # closeness is what matters: the output dtype differs by device (CUDA autocast returns
        # float32 after the final resize, CPU autocast bfloat16)
        assert low.dtype in (torch.bfloat16, torch.float32)
        assert ((low.float() - ref).norm() / ref.norm()).item() < 0.05
        model.train()
        with torch.autocast(device, dtype=torch.bfloat16):
            out = model(x)
            loss = out["out"].float().square().mean() + out["aux"].float().square().mean()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    @pytest.mark.slow
    def test_torch_compile(self):
        model = self.build(aux=False).eval()
        x = torch.randn(1, 3, 40, 56)
        compiled = torch.compile(model)
        with torch.no_grad():
            expected = model(x)["out"]
            got = compiled(x)["out"]
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


class TestFCN(ModelHarness):
    name = "fcn"


class TestFCNPool(ModelHarness):
    name = "fcn_pool"


class TestPSPNet(ModelHarness):
    name = "pspnet"


class TestGSAGBasic(ModelHarness):
    name = "gsag_basic"
    kwargs = {k: v for k, v in SMALL.items() if k in ("head_channels", "fuse_channels")}  # noqa: RUF012


class TestGSAGIncremental(ModelHarness):
    name = "gsag_incremental"
    kwargs = SMALL


class TestGSAGHybrid(ModelHarness):
    name = "gsag_hybrid"
    kwargs = SMALL


class TestDeepLabV3(ModelHarness):
    name = "deeplabv3"
    kwargs = {"head_channels": 16}  # noqa: RUF012


class TestDANet(ModelHarness):
    name = "danet"

    def prepare_for_grad(self, model):
        for module in model.modules():
            if hasattr(module, "gamma"):
                nn.init.constant_(module.gamma, 0.5)


class TestDeepLabV3Plus(ModelHarness):
    name = "deeplabv3plus"
    kwargs = {"head_channels": 16, "low_channels": 8}  # noqa: RUF012


class TestUPerNet(ModelHarness):
    name = "upernet"
    kwargs = {"head_channels": 16}  # noqa: RUF012


class TestSegFormer(ModelHarness):
    name = "segformer"
    kwargs = {"head_channels": 16}  # noqa: RUF012


def test_every_model_is_in_the_harness():
    covered = {cls.name for cls in ModelHarness.__subclasses__()}
    assert covered == set(gsag.list_models())


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="gsag_hybrid") as err:
        gsag.create_model("gsag_mega", 21, backbone=BACKBONE)
    assert "gsag_mega" in str(err.value)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="resnext101_32x8d") as err:
        gsag.create_model("fcn", 21, backbone="resnxt101_32x8d")
    assert "resnxt101_32x8d" in str(err.value)


def test_unknown_head_kwarg_names_accepted_ones():
    with pytest.raises(TypeError, match="num_heads") as err:
        gsag.create_model("fcn", 21, backbone=BACKBONE, num_heads=4)
    assert "dropout" in str(err.value)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        gsag.create_model("fcn", bad, backbone=BACKBONE)


def test_models_command_markdown_table(capsys):
    from gsag.cli import main
    from gsag.flops import count_params

    assert main(["models", "--backbone", BACKBONE, "--size", "48", "--markdown", "--flops"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| model | backbone | params (M) | GFLOPs @ 48x48 |")
    rows = {
        cells[0]: cells
        for cells in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:])
    }
    assert list(rows) == gsag.list_models()
    for name, cells in rows.items():
        expected = count_params(gsag.create_model(name, 21, backbone=BACKBONE, aux=False)) / 1e6
        assert cells[1] == BACKBONE
        assert float(cells[2]) == pytest.approx(expected, abs=0.006)
        assert float(cells[3]) > 0


def test_models_command_rejects_unknown_backbone(capsys):
    from gsag.cli import main

    assert main(["models", "--backbone", "resnet5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "resnet50" in err[0]
