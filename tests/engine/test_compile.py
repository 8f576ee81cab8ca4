"""Mixed-precision resolution and compile modes: amp auto, head/model compile, no per-size
recompiles over images of mixed sizes."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image

import gsag
from gsag.config import load_config
from gsag.engine import compile as compile_mod
from gsag.engine.compile import CompileClock, apply_compile, compiled_graphs, resolve_amp
from gsag.engine.evaluate import evaluate

pytestmark = pytest.mark.usefixtures("single_thread")  # one torch thread per test

SIZES = [(40, 56), (64, 48), (56, 72), (48, 40)]  # four sizes, none repeated


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return gsag.create_model("gsag_basic", 5, backbone="test_resnet", pretrained=False).eval()


def test_amp_auto_is_float32_on_cpu_and_explicit_values_pass_through():
    assert resolve_amp("auto", "cpu") == "none"
    assert [resolve_amp(a, "cpu") for a in ("bf16", "fp16", "none")] == ["bf16", "fp16", "none"]
    with pytest.raises(ValueError, match="choose one of auto, bf16, fp16, none"):
        resolve_amp("fp8", "cpu")


@pytest.mark.parametrize(
    ("value", "mode"), [("true", "model"), ("false", "none"), ("head", "head")]
)
def test_train_compile_reads_old_booleans_and_new_modes(value, mode):
    assert load_config(None, [f"train.compile={value}"]).train.compile == mode


def test_bad_compile_mode_is_named():
    with pytest.raises(
        ValueError, match=r"train\.compile is 'all'; it must be one of none, head, model"
    ):
        load_config(None, ["train.compile=all"])


def test_head_compile_keeps_checkpoint_keys_and_outputs():
    model, ref = tiny_model(), tiny_model()
    apply_compile(model, "head", backend="eager")
    assert model.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["out"], ref(x)["out"])


class _MixedSizes(torch.utils.data.Dataset):
    num_classes, ignore_index = 5, 255

    def __len__(self) -> int:
        return len(SIZES)

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        h, w = SIZES[i]
        return torch.randn(3, h, w, generator=g), torch.randint(0, 5, (h, w), generator=g)


def graphs_for_evaluation(dynamic: bool) -> tuple[int, CompileClock]:
    torch._dynamo.reset()
    before = compiled_graphs()
    clock = CompileClock(apply_compile(tiny_model(), "head", dynamic=dynamic, backend="eager"))
    evaluate(clock, _MixedSizes())
    return compiled_graphs() - before, clock


def test_evaluation_over_mixed_sizes_compiles_a_bounded_number_of_times():
    static_graphs, _ = graphs_for_evaluation(dynamic=False)
    assert static_graphs == len(SIZES)  # the reference: a static graph per size
    # Dynamic shapes: one graph, plus at most one more where a kernel choice depends on the
    # size (e.g. a guard like `channels * h * w <= 20480` from the CPU convolution)
    graphs, clock = graphs_for_evaluation(dynamic=True)
    assert 1 <= graphs <= 2
    assert len(clock.compiling_s) == graphs and len(clock.steady_s) == len(SIZES) - graphs
    assert clock.compile_seconds > 0


def test_predict_over_a_folder_of_mixed_sizes_does_not_recompile(tmp_path, monkeypatch):
    monkeypatch.setattr(
        compile_mod, "apply_compile", functools.partial(apply_compile, backend="eager")
    )
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    from gsag.trained.predict import Predictor, list_images, predict_files

    info = {"classes": [str(i) for i in range(5)], "palette": [[i, i, i] for i in range(5)]}
    eager = Predictor.from_model(tiny_model(), info, compile="none")
    torch._dynamo.reset()
    before = compiled_graphs()
    compiled = Predictor.from_model(tiny_model(), info, compile="head")
    files = list_images(folder)
    predict_files(compiled, files, tmp_path / "out", overlays=False)
    assert 1 <= compiled_graphs() - before <= 2  # as in the evaluation test above
    assert compiled.compile_seconds > 0 and compiled.amp == "none"
    for f in files:  # compiled and eager agree on every size
        torch.testing.assert_close(compiled.logits(f), eager.logits(f))
