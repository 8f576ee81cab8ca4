"""gsag bench: timing helpers, SDPA backend detection, memory measurement, ratios, outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsag import bench
from gsag.errors import UsageError


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> dict:
        self.calls += 1
        q = x.flatten(2).transpose(1, 2).unsqueeze(1).contiguous()  # (B, 1, N, C)
        return {"out": F.scaled_dot_product_attention(q, q, q)}


def test_percentile_matches_numpy():
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert bench._percentile(values, q) == pytest.approx(np.percentile(values, 100 * q))


def test_time_inference_runs_warmup_then_repeats():
    model = _Attention()
    times = bench.time_inference(model, torch.randn(1, 8, 4, 4), warmup=2, repeats=3)
    assert len(times.wall_ms) == 3 and all(t > 0 for t in times.wall_ms)
    assert len(times.cpu_ms) == 3 and all(t >= 0 for t in times.cpu_ms)
    assert model.calls == 5


def test_sdpa_backend_names_the_kernel_that_ran():
    model = _Attention()
    x = torch.randn(1, 16, 8, 8)
    assert "flash (CPU fused)" in bench.sdpa_backends(model, x)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        assert bench.sdpa_backends(model, x) == "math"
    assert bench.sdpa_backends(nn.Conv2d(16, 4, 1).eval(), x) == "-"


def test_peak_rss_sees_a_known_allocation():
    size_mib = 160
    peak = bench.peak_rss_during(lambda: torch.ones(size_mib * 2**20 // 4).sum())
    assert size_mib * 0.9 < peak < size_mib * 1.5


def test_cpu_peak_memory_grows_with_input_size():
    small = bench.cpu_peak_memory_mb("deeplabv3", "test_resnet", 96, 96)
    large = bench.cpu_peak_memory_mb("deeplabv3", "test_resnet", 384, 384)
    assert large > small + 5


def test_train_step_updates_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    wrapped = _DictOut(model)
    before = model[0].weight.detach().clone()
    times = bench.time_train_step(wrapped, torch.randn(2, 3, 8, 8), num_classes=4, repeats=2)
    assert len(times.wall_ms) == 2
    assert not torch.equal(before, model[0].weight)


class _DictOut(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return {"out": self.inner(x)}


def _row(model, latency, params, backbone="b", size=64):
    return bench.BenchRow(model, backbone, size, size, 1, params_m=params, latency_ms=latency)


def test_ratios_are_relative_to_deeplabv3_of_the_same_backbone_and_size():
    rows = [
        _row("gsag_hybrid", 30.0, 8.0),
        _row("deeplabv3", 40.0, 10.0),
        _row("gsag_hybrid", 90.0, 8.0, size=128),
        _row("deeplabv3", 60.0, 10.0, size=128),
        _row("fcn", 10.0, 5.0, backbone="other"),  # no baseline for this backbone
    ]
    bench.add_ratios(rows)
    assert rows[0].ratios["latency_ms"] == pytest.approx(0.75)
    assert rows[0].ratios["params_m"] == pytest.approx(0.8)
    assert rows[2].ratios["latency_ms"] == pytest.approx(1.5)
    assert rows[1].ratios["latency_ms"] == pytest.approx(1.0)
    assert rows[4].ratios == {}
    assert "peak_mem_mb" not in rows[0].ratios  # NaN metrics get no ratio


def test_run_bench_adds_the_baseline_and_writes_json_and_markdown(tmp_path):
    settings = bench.BenchSettings(warmup=0, repeats=1, memory=False, train_step=False)
    rows = bench.run_bench(["gsag_hybrid"], ["test_resnet"], [(64, 64)], settings=settings)
    assert [r.model for r in rows] == ["gsag_hybrid", "deeplabv3"]
    hybrid, base = rows
    assert not hybrid.error and not base.error
    from gsag import create_model
    from gsag.flops import count_params

    ref = create_model("gsag_hybrid", 21, backbone="test_resnet", aux=False)
    assert hybrid.params_m == pytest.approx(count_params(ref) / 1e6)
    assert hybrid.ratios["params_m"] == pytest.approx(hybrid.params_m / base.params_m)
    assert hybrid.sdpa_backend == "flash (CPU fused)"
    assert base.sdpa_backend == "-"
    assert math.isnan(hybrid.train_step_ms)
    paths = bench.write_results(rows, bench.environment(), tmp_path)
    data = json.loads(paths["json"].read_text())
    assert [r["model"] for r in data["rows"]] == ["gsag_hybrid", "deeplabv3"]
    md = paths["markdown"].read_text()
    assert "| gsag_hybrid | test_resnet | 1x64x64 |" in md
    assert "1.00x" in md  # the baseline against itself


def test_bench_cli_updates_only_the_marked_section_of_a_doc(tmp_path):
    from gsag.cli import main
    from gsag.commands.bench import DOC_END, DOC_START

    doc = tmp_path / "bench.md"
    start, end = DOC_START.format("sweep"), DOC_END.format("sweep")
    doc.write_text(f"# Title\n\nprose before\n\n{start}\nold table\n{end}\n\nprose after\n")
    args = ["bench", "--models", "fcn", "--backbones", "test_resnet", "--sizes", "64x80",
            "--repeats", "1", "--warmup", "0", "--no-train", "--no-memory",
            "--out", str(tmp_path / "out"), "--update-doc", str(doc), "--doc-section", "sweep"]  # fmt: skip
    assert main(args) == 0
    text = doc.read_text()
    assert text.startswith("# Title\n\nprose before\n\n") and text.endswith("\n\nprose after\n")
    assert "old table" not in text
    assert (
        "| fcn | test_resnet | 1x64x80 |" in text
        and "| deeplabv3 | test_resnet | 1x64x80 |" in text
    )
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert {r["model"] for r in data["rows"]} == {"fcn", "deeplabv3"}


@pytest.mark.parametrize("text", ["0", "abc", "512x", "16"])
def test_bench_cli_rejects_bad_sizes(text):
    from gsag.commands.bench import parse_size

    with pytest.raises(UsageError, match="not like 512"):
        parse_size(text)


def test_interleaved_rounds_rotate_the_order():
    log = []
    calls = {k: (lambda k=k: log.append(k)) for k in "abc"}
    out = bench.interleaved(calls, rounds=3, repeats=2, device=torch.device("cpu"))
    assert log == list("aabbccbbccaaccaabb")
    assert all(len(out[k]) == 3 and all(len(t.wall_ms) == 2 for t in out[k]) for k in "abc")


def test_round_ratios_are_the_per_round_ratios_with_their_median_min_max():
    model, base = _row("gsag_hybrid", 30.0, 8.0), _row("deeplabv3", 40.0, 10.0)
    model.rounds = {"cpu_ms": [30.0, 45.0, 20.0, 33.0]}
    base.rounds = {"cpu_ms": [40.0, 50.0, 40.0, 30.0]}
    model.cpu_ms, base.cpu_ms = 31.5, 40.0  # medians of all calls: a ratio of 0.7875
    bench.add_ratios([model, base])
    ratios = [0.75, 0.9, 0.5, 1.1]
    found = model.round_ratios["cpu_ms"]
    assert found["per_round"] == pytest.approx(ratios)  # one per round, no more
    assert (found["median"], found["min"], found["max"]) == pytest.approx(
        (np.median(ratios), 0.5, 1.1)
    )
    assert model.ratios["cpu_ms"] == found["median"]  # one value, not a ratio of medians
    assert base.round_ratios["cpu_ms"]["per_round"] == pytest.approx([1.0] * 4)


def test_terminal_table_and_bench_md_print_the_same_ratio():
    """One value rounded once: the terminal said 1.74x and bench.md 1.71x for one row (a ratio
    of medians against the median of per-round ratios)."""
    model, base = _row("gsag_hybrid", 30.0, 8.0), _row("deeplabv3", 40.0, 10.0)
    model.rounds, base.rounds = {"cpu_ms": [50.0, 81.0]}, {"cpu_ms": [40.0, 30.0]}
    model.cpu_ms, base.cpu_ms = 65.5, 35.0  # 1.87 as a ratio of the medians
    bench.add_ratios([model, base])  # per round 1.25 and 2.70: median 1.975
    env = {"device": "cpu", "cpu": "x", "threads": 1, "torch": "t", "date": "d"}
    terminal = bench.compact_table([model, base], env).splitlines()[1]
    markdown = next(ln for ln in bench.to_markdown([model, base], env).splitlines()
                    if ln.startswith("| gsag_hybrid"))  # fmt: skip
    assert "1.87x" not in terminal + markdown
    assert "1.98x" in terminal.split() and "1.98x (1.25-2.70)" in markdown


def test_bench_labels_the_lines_it_prints_before_its_table():
    from gsag.commands.bench import row_done_line

    row = _row("gsag_hybrid", 30.0, 8.0, backbone="resnet50", size=512)
    row.cpu_ms = 55.0
    assert row_done_line(row, "cpu") == (
        "measured gsag_hybrid/resnet50 at 1x512x512: forward pass 55.0 ms CPU time, "
        "30.0 ms wall (medians)"
    )
    assert row_done_line(row, "cuda").endswith("forward pass 30.0 ms wall (median)")


def test_bench_cli_amp_bf16_compile_head_best_on_cpu(tmp_path):
    from gsag.cli import main

    out = tmp_path / "out"
    args = ["bench", "--models", "gsag_basic", "--backbones", "test_resnet", "--sizes", "64",
            "--amp", "bf16", "--compile", "head", "--compile-backend", "eager", "--best",
            "--channels-last", "--rounds", "2", "--repeats", "1", "--warmup", "1",
            "--train-repeats", "1", "--no-memory", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    data = json.loads((out / "bench.json").read_text())
    assert data["settings"]["amp"] == "bf16" and data["settings"]["best"]
    for row in data["rows"]:
        assert not row["error"]
        assert row["compile"] in ("none", "head") and row["train_compile"] in ("none", "head")
        assert row["compile_s"]["head"] >= 0 and "train head" in row["compile_s"]
        assert len(row["rounds"]["cpu_ms"]) == 2 and len(row["rounds"]["train_step_cpu_ms"]) == 2
        assert math.isfinite(row["train_step_ms"])
    _, base = data["rows"]
    assert base["round_ratios"]["cpu_ms"]["per_round"] == [1.0, 1.0]  # --rounds 2
    assert base["ratios"]["cpu_ms"] == base["round_ratios"]["cpu_ms"]["median"] == 1.0
    assert "amp bf16, channels_last on" in (out / "bench.md").read_text()


def test_bench_cli_unknown_model_fails_with_the_valid_names(tmp_path, capsys):
    from gsag.cli import main

    code = main(["bench", "--models", "nope", "--out", str(tmp_path / "out")])
    message = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in message
    assert "--models 'nope' is unknown" in message and "gsag_hybrid" in message
    assert bench.PEER in message  # the torchvision peer is a valid name too
    assert not (tmp_path / "out").exists()


def test_torchvision_peer_is_deeplabv3_resnet50_and_compiles_its_classifier():
    model = bench.build_model(bench.PEER, "ignored", aux=False).eval()
    from torchvision.models.segmentation import DeepLabV3

    assert isinstance(model, DeepLabV3) and model.aux_classifier is None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)["out"]
        bench.apply_compile(model, "head", backend="eager")
        torch.testing.assert_close(model(x)["out"], ref)
    assert ref.shape == (1, 21, 64, 64)


@pytest.mark.slow
def test_bench_cli_compiles_the_head_with_inductor_on_cpu(tmp_path):
    from gsag.cli import main

    out = tmp_path / "out"
    args = ["bench", "--models", "gsag_basic", "--backbones", "test_resnet", "--sizes", "64",
            "--amp", "bf16", "--compile", "head", "--rounds", "1", "--repeats", "1",
            "--warmup", "1", "--no-train", "--no-memory", "--threads", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert all(r["compile"] == "head" and r["compile_s"]["head"] > 0 for r in rows)


class CompilationError(Exception):
    """Like Triton's errors: derives from Exception, not RuntimeError."""


def test_a_row_that_raises_any_exception_is_recorded_and_the_run_goes_on(monkeypatch):
    build = bench.build_model

    def failing(name, *args, **kwargs):
        if name == "fcn":
            raise CompilationError("at 14:8: arange's arguments must be of type tl.constexpr")
        return build(name, *args, **kwargs)

    monkeypatch.setattr(bench.run, "build_model", failing)
    settings = bench.BenchSettings(warmup=0, repeats=1, memory=False, train_step=True,
                                   train_repeats=1)  # fmt: skip
    rows = bench.run_bench(["fcn"], ["test_resnet"], [(64, 64)], settings=settings)
    fcn, base = rows
    assert fcn.error.startswith("CompilationError: at 14:8") and math.isnan(fcn.latency_ms)
    assert not base.error and math.isfinite(base.latency_ms) and math.isfinite(base.train_step_ms)


def test_peer_row_names_its_own_backbone_and_is_compared_only_at_resnet50():
    rows = [
        _row("deeplabv3", 40.0, 10.0, backbone="resnet18"),
        _row(bench.PEER, 80.0, 40.0, backbone=bench.PEER_LABEL),
        _row("deeplabv3", 60.0, 20.0, backbone="resnet50"),
    ]
    bench.add_ratios(rows[:2])
    assert rows[1].ratios == {}  # a resnet18 run: nothing of the peer's kind to compare with
    bench.add_ratios(rows)
    assert rows[1].ratios["latency_ms"] == pytest.approx(80.0 / 60.0)


def test_run_bench_measures_the_peer_once_labelled_with_its_backbone(monkeypatch):
    built = []
    build = bench.build_model

    def small(name, backbone, *args, **kwargs):  # the peer swapped for a tiny model
        built.append((name, backbone))
        return build("fcn" if name == bench.PEER else name, "test_resnet", *args, **kwargs)

    monkeypatch.setattr(bench.run, "build_model", small)
    settings = bench.BenchSettings(warmup=0, repeats=1, memory=False, train_step=False)
    rows = bench.run_bench([bench.PEER], ["test_resnet"], [(64, 64)], settings=settings)
    peer = next(r for r in rows if r.model == bench.PEER)
    assert peer.backbone == bench.PEER_LABEL and not peer.error
    assert peer.ratios == {}  # test_resnet run: no resnet50 baseline
    assert [b for n, b in built if n == bench.PEER] == [bench.PEER_LABEL]


def test_progress_reports_each_model_then_inference_rows_before_the_training_step():
    seen = []
    settings = bench.BenchSettings(warmup=0, repeats=1, memory=False, train_repeats=1)
    bench.run_bench(["fcn"], ["test_resnet"], [(64, 64)], settings=settings,
                    on_progress=lambda rows: seen.append([(r.model, r.latency_ms, r.train_step_ms, dict(r.warmup_ms)) for r in rows]))  # fmt: skip
    # after each model's set-up: its warm-up time, no latency yet; the next model untouched
    fcn_only, both_set_up, inference, last = seen
    assert [(m, w.keys()) for m, _, _, w in fcn_only] == [("fcn", {"none"}), ("deeplabv3", set())]
    assert all(math.isnan(lat) for _, lat, _, _ in fcn_only + both_set_up)
    assert all(w["none"] > 0 for _, _, _, w in both_set_up)
    assert [m for m, _, _, _ in inference] == ["fcn", "deeplabv3"]
    assert all(math.isfinite(lat) and math.isnan(train) for _, lat, train, _ in inference)
    assert all(math.isfinite(train) for _, _, train, _ in last)


def test_compiled_bench_writes_each_models_compile_time_before_the_next_compiles(tmp_path):
    """What a time limit leaves of a --compile model bench: after the first model's compile,
    bench.json already holds its compile time and mode."""
    snapshots = []

    def write(rows):
        bench.write_results(rows, bench.environment("cpu"), tmp_path)
        snapshots.append(json.loads((tmp_path / "bench.json").read_text())["rows"])

    settings = bench.BenchSettings(warmup=1, repeats=1, memory=False, train_step=False,
                                   compile="model", compile_backend="eager")  # fmt: skip
    bench.run_bench(["gsag_basic"], ["test_resnet"], [(64, 64)], settings=settings,
                    on_progress=write)  # fmt: skip
    first = snapshots[0]
    assert [r["model"] for r in first] == ["gsag_basic", "deeplabv3"]
    assert first[0]["compile"] == "model" and first[0]["compile_s"].keys() == {"model"}
    assert first[1]["compile_s"] == {} and first[1]["warmup_ms"] == {}


def test_compact_table_keeps_the_columns_that_matter_within_80_characters():
    rows = [_row("gsag_incremental", 30.0, 8.0, backbone="resnet50", size=512),
            _row("deeplabv3", 40.0, 10.0, backbone="resnet50", size=512),
            _row(bench.PEER, 50.0, 40.0, backbone=bench.PEER_LABEL, size=512)]  # fmt: skip
    for r in rows:
        r.batch, r.train_step_ms, r.peak_mem_mb = 8, 3 * r.latency_ms, 1234.0
    rows[0].error = "OutOfResources: out of resource: shared memory"
    bench.add_ratios(rows)
    text = bench.compact_table(rows, {"device": "cuda"})
    lines = text.splitlines()
    assert lines[0].split() == ["model", "backbone", "input", "ms", "train", "ms", "MiB",
                                "x", "base", "train", "x"]  # fmt: skip
    assert all(len(line) <= 80 for line in lines[1:] if "error" not in line)
    assert "error: OutOfResources" in lines[1]
    assert lines[2].split()[-2:] == ["1.00x", "1.00x"]
    assert lines[3].split()[1] == bench.PEER_LABEL and lines[3].split()[-2:] == ["1.25x", "1.25x"]
    assert "| model |" not in text  # the markdown table goes to the file


def test_psa_bytes_count_what_the_op_must_read_and_write():
    from gsag.bench.psa import psa_bytes

    # the estimate at the benchmark shape: ~85 MB forward, ~254 MB forward + backward
    fwd, both = psa_bytes(8, 8, (64, 64), 32, 32, in_bytes=2, out_bytes=4)
    assert round(fwd / 1e6) == 85 and round(both / 1e6) == 254
    # one pixel, one head, by hand: q, k (3 each), v (5) in float16, output float32
    fwd, both = psa_bytes(1, 1, (1, 1), 3, 5, in_bytes=2, out_bytes=4)
    assert fwd == (3 + 3 + 5) * 2 + 5 * 4 + 4  # read q k v; write out and the log-sum-exp
    assert both - fwd == (3 + 3 + 5) * 2 + 5 * 4 + 5 * 4 + 4 + (3 + 3 + 5) * 2


def test_psa_benchmark_reports_each_implementation_on_cpu():
    from gsag.bench.psa import IMPLS, benchmark_local_attention, psa_bytes

    assert IMPLS[0] == "triton"  # timed first: the number a GPU session is lent for
    small = dict(batch=1, heads=2, size=(5, 4), head_dim=3, kernel_size=3, dtype=torch.float32)
    written = []
    rows = benchmark_local_attention(**small, device="cpu", impls=("reference", "reference_compiled"),
                                     min_run_time=0.01, compile_backend="eager",
                                     on_impl=lambda r: written.append(list(r)))  # fmt: skip
    assert list(rows) == ["reference", "reference_compiled"]
    assert written == [["reference"], ["reference", "reference_compiled"]]  # after each
    fwd, both = psa_bytes(1, 2, (5, 4), 3, 3, 4, 4)
    for row in rows.values():
        assert set(row) == {
            "forward_ms",
            "forward_backward_ms",
            "forward_gbps",
            "forward_backward_gbps",
            "out_rel_err",
            "grad_rel_err",
        }
        assert row["forward_gbps"] == pytest.approx(fwd / row["forward_ms"] / 1e6)
        assert row["forward_backward_gbps"] == pytest.approx(
            both / row["forward_backward_ms"] / 1e6
        )
        assert row["out_rel_err"] < 1e-6 and row["grad_rel_err"] < 1e-6  # float32: the same


def test_psa_benchmark_errors_measure_the_rounding_of_16_bit_inputs():
    from gsag.bench.psa import benchmark_local_attention

    small = dict(batch=1, heads=2, size=(6, 5), head_dim=4, kernel_size=3, device="cpu")
    row = benchmark_local_attention(**small, dtype=torch.bfloat16, impls=("reference",),
                                    min_run_time=0.01)["reference"]  # fmt: skip
    assert 1e-4 < row["out_rel_err"] < 2e-2  # bf16 arithmetic against float32 on the same values
    assert 1e-4 < row["grad_rel_err"] < 5e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_psa_benchmark_on_cuda_reports_peak_memory():
    from gsag.bench.psa import benchmark_local_attention

    rows = benchmark_local_attention(batch=1, heads=2, size=(16, 16), min_run_time=0.05)
    assert set(rows) == {"reference", "reference_compiled", "triton"}
    assert all(row["peak_mib"] > 0 for row in rows.values())


def test_code_version_names_the_commit_and_a_dirty_tree(tmp_path):
    import subprocess

    from gsag.bench.environment import code_version

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    assert code_version(tmp_path) == {"commit": None, "dirty": None}  # not a checkout
    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / ".gitignore").write_text("runs/\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "one")
    assert code_version(tmp_path) == {"commit": git("rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r.json").write_text("{}")  # ignored: still clean
    assert code_version(tmp_path)["dirty"] is False
    (tmp_path / "b.py").write_text("y = 2\n")  # untracked, not ignored
    assert code_version(tmp_path)["dirty"] is True
    (tmp_path / "b.py").unlink()
    (tmp_path / "a.py").write_text("x = 2\n")  # a tracked change
    assert code_version(tmp_path)["dirty"] is True
    (tmp_path / "sub").mkdir()
    assert code_version(tmp_path / "sub") == {"commit": None, "dirty": None}  # not the top


def test_environment_records_the_code_version():
    from gsag.bench.environment import code_version, environment

    assert environment()["code"] == code_version()
