"""tools/: pair_accuracy.py (the context pairs' accuracy, its plot) and gpu_check.py (its steps,
limits and CPU dry run)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    """tools/NAME.py as a module (registered, so that its dataclasses find it)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / f"tools/{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _tool():
    return _load("pair_accuracy")


def _metrics(rng, classes, n=4000):
    target = rng.integers(0, len(classes), n)
    pred = np.where(rng.random(n) < 0.6, target, rng.integers(0, len(classes), n))
    return target, pred


def test_pair_accuracy_counts_pixels_of_the_pair_only(tmp_path, capsys):
    tool = _tool()
    classes = ["background", "car", "boat", "rider", "walker"]
    rng = np.random.default_rng(0)
    for name in ("hybrid_s0", "hybrid_s1", "basic_s0"):
        target, pred = _metrics(rng, classes)
        confusion = np.zeros((len(classes), len(classes)), dtype=int)
        np.add.at(confusion, (target, pred), 1)
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(
            json.dumps({"confusion": confusion.tolist(), "classes": classes})
        )
        for a, b in tool.PAIRS:
            ia, ib = classes.index(a), classes.index(b)
            in_pair = np.isin(target, [ia, ib]) & np.isin(pred, [ia, ib])
            expected = (pred[in_pair] == target[in_pair]).mean()
            got = tool.pair_accuracy(confusion.tolist(), classes, a, b)
            assert abs(got - expected) < 1e-12
    paths = sorted(str(p) for p in tmp_path.glob("*/metrics.json"))
    tool.main([*paths, "--plot", str(tmp_path / "pairs.png")])
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| metrics | car-vs-boat acc | rider-vs-walker acc |"
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| basic_s0",
        "| hybrid_s0",
        "| hybrid_s1",
    ]
    assert (tmp_path / "pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pair_accuracy_is_nan_when_the_pair_is_never_predicted():
    tool = _tool()
    confusion = [[5, 0, 0], [3, 0, 0], [2, 0, 0]]  # car and boat always predicted background
    assert np.isnan(tool.pair_accuracy(confusion, ["background", "car", "boat"], "car", "boat"))


# ------------------------------------------------------------------ tools/gpu_check.py


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools/gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_gpu_check_plan_fits_eight_minutes_and_writes_nothing_into_the_repository(tmp_path):
    tool = _gpu_check()
    out, work = tmp_path / "out", tmp_path / "work"
    plan = tool.steps(work, out)
    assert [s.name for s in plan] == [
        "environment", "psa_bench", "bench_eager", "bench_compile_model", "bench_compile_head",
        "pytest_local_attention",
    ]  # fmt: skip
    assert tool.BUDGET_S <= 8 * 60
    *timed, last = plan
    assert sum(s.limit_s for s in timed) + 40 <= tool.BUDGET_S  # the last gets what is left
    for s in plan:
        assert s.limit_s == sum(tool.LIMITS[s.name]) and s.trace_s > 0
        assert all(not str(part).startswith(str(ROOT / "docs")) for part in s.command)
    bench = {s.name: s.command for s in plan if s.name.startswith("bench")}
    for name, cmd in bench.items():
        assert cmd[cmd.index("--update-doc") + 1] == str(out / "bench.md")
        assert cmd[cmd.index("--out") + 1] == str(work / name)
        assert "--torchvision-peer" not in cmd
    eager = bench["bench_eager"]
    assert eager[eager.index("--models") + 1 : eager.index("--compile")] == list(tool.TARGETS)
    assert (
        bench["bench_compile_model"][bench["bench_compile_model"].index("--compile") + 1] == "model"
    )
    assert "-x" in last.command and "-rA" in last.command


def test_gpu_check_step_over_its_limit_is_killed_and_recorded(tmp_path):
    """A step past its limit: its process group killed, rc 124, the refresh called while it
    ran, its output kept."""
    tool = _gpu_check()
    code = "import subprocess, sys, time; print('started', flush=True); time.sleep(60)"
    step = tool.Step("sleeper", [sys.executable, "-c", code], 1, 0, 0)
    rec = tool.Record(step, tmp_path / "sleeper.log", __import__("time").monotonic(), limit=1.5)
    refreshed = []
    tool.run_step(rec, lambda: refreshed.append(rec.rc))
    assert rec.rc == 124 and 1.5 <= rec.seconds < 30
    assert refreshed and set(refreshed) == {None}  # while it ran
    assert rec.log_text() == "started\n"
    assert rec.result(tmp_path)["rc"] == 124


def test_gpu_check_trace_times_are_the_committed_records(tmp_path):
    """Each limit's trace part is the step's CPU seconds in the recorded CPU-trace run."""
    import math

    tool = _gpu_check()
    record = json.loads((ROOT / "docs/results/gpu_check_trace/summary.json").read_text())
    assert record["dry_run"] and record["backbone"] == "resnet50"
    measured = {s["step"]: s["cpu_s"] for s in record["steps"] if s["rc"] == 0}
    assert measured.keys() == tool.LIMITS.keys()
    for name, (trace, _, _) in tool.LIMITS.items():
        assert trace == math.ceil(measured[name]), name


def _kill_step(check: subprocess.Popen, step: str, out: Path, timeout: float = 900) -> bool:
    """SIGKILL the process of `step` (a `gsag bench` whose command line names the step and
    the output folder) as soon as it runs; False if it never showed up."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and check.poll() is None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = (Path("/proc") / pid / "cmdline").read_bytes().decode()
            except OSError:
                continue
            if step in cmdline and str(out) in cmdline and "\0gsag\0bench\0" in cmdline:
                os.kill(int(pid), signal.SIGKILL)
                return True
        time.sleep(0.1)
    return False


def test_gpu_check_dry_run_leaves_at_most_8_files_that_parse_after_a_step_is_killed(tmp_path):
    """The whole check on CPU at tiny sizes, as the GPU run calls it, with one step's process
    killed (SIGKILL) while it runs: at most 8 files in the output folder, the fixed names,
    summary.json parses and holds every step (the killed one with rc -9, the later ones run),
    the bench tables are in OUT/bench.md and the steps' files in steps.jsonl."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    cmd = [str(ROOT / "tools/gpu_check.sh"), "--dry-run", "--out", str(out)]
    check = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert _kill_step(check, "bench_compile_head", out)
        output = check.communicate(timeout=1200)[0]
    finally:
        check.kill()
    files = _files(out)
    assert len(files) <= 8 and files == sorted(_gpu_check().FILES), files
    assert check.returncode == 1, output[-3000:]  # 1: a step failed (the killed one)
    summary = json.loads((out / "summary.json").read_text())
    by_name = {s["step"]: s for s in summary["steps"]}
    assert list(by_name) == [s.name for s in _gpu_check().steps(tmp_path, out, "test_resnet")]
    assert by_name["bench_compile_head"]["rc"] == -9
    assert [s["rc"] for n, s in by_name.items() if n != "bench_compile_head"] == [0] * 5
    assert by_name["psa_bench"]["headline"]["reference_compiled"]["forward_gbps"] > 0
    assert len(by_name["environment"]["headline"]["code"]["commit"]) == 40  # what the GPU ran
    assert by_name["bench_compile_model"]["headline"]["ms"].keys() == {
        "gsag_hybrid model", "deeplabv3 model"}  # fmt: skip
    assert not by_name["bench_eager"]["headline"]["errors"]
    assert by_name["pytest_local_attention"]["headline"]["skipped"] >= 10  # gpu tests, on CPU
    lines = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(by_name)
    bundled = {line["step"]: line["results"] for line in lines}
    assert len(bundled["bench_eager"]["bench_eager/bench.json"]["rows"]) == 2
    assert set(bundled["psa_bench"]["psa.json"]) == {"reference", "reference_compiled"}
    doc = (out / "bench.md").read_text()
    assert doc.count("| gsag_hybrid | test_resnet |") == 1  # compile_model's; eager: basic only
    assert "<!-- bench-gpu-compile_head:start -->\nnot yet run\n" in doc  # killed: no table
    log = (out / "gpu_check.log").read_text()
    assert "== bench_compile_head: rc -9" in log and "== pytest_local_attention: rc 0" in log


def test_gpu_check_stopped_by_sigterm_writes_what_it_has(tmp_path):
    """The session's limit may stop the whole check (SIGTERM): the running step is killed and
    summary.json says so, with the finished steps' numbers."""
    import signal
    import time

    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "tools/gpu_check.py"), "--dry-run", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # until the second step runs
            steps = _summary_steps(out / "summary.json")
            if len(steps) == 2 and steps[1]["running"]:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        proc.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "SIGTERM" and summary["steps"][0]["rc"] == 0
    assert summary["steps"][1]["rc"] == "stopped" and len(summary["steps"]) == 2
    assert _files(out) == sorted(_gpu_check().FILES)


def _summary_steps(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())["steps"]
    except (OSError, ValueError, KeyError):
        return []


def test_gpu_check_runs_python3_first_and_fails_in_one_line_without_torch(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for name, real in (("python3", sys.executable), ("python", "/bin/false")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho {name} >> {calls}\nexec {real} "$@"\n')
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"} | {
        "PATH": f"{bin_dir}:/usr/bin:/bin"
    }
    tool = str(ROOT / "tools/gpu_check.sh")
    proc = subprocess.run([tool, "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout, proc.stderr
    assert set(calls.read_text().split()) == {"python3"}  # python never asked
    (bin_dir / "python3").write_text("#!/bin/sh\nexit 1\n")  # neither imports torch
    proc = subprocess.run([tool, "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "python3, python can import torch" in proc.stderr


def test_gpu_check_apply_copies_the_tables_it_has_into_the_doc(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "bench.md").write_text(
        "<!-- bench-gpu-eager:start -->\n| model |\n| --- |\n| gsag_hybrid |\n"
        "<!-- bench-gpu-eager:end -->\n<!-- bench-gpu-compile_head:start -->\nnot yet run\n"
        "<!-- bench-gpu-compile_head:end -->\n"
    )
    doc = tmp_path / "bench.md"
    doc.write_text(
        "# Bench\n\n<!-- bench-gpu-eager:start -->\n**Not yet run**\n<!-- bench-gpu-eager:end -->"
        "\n\n<!-- bench-gpu-compile_head:start -->\n**Not yet run**\n"
        "<!-- bench-gpu-compile_head:end -->\nafter\n"
    )
    cmd = [sys.executable, str(ROOT / "tools/gpu_check.py"), "apply", str(out), "--doc", str(doc)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert doc.read_text() == (
        "# Bench\n\n<!-- bench-gpu-eager:start -->\n| model |\n| --- |\n| gsag_hybrid |\n"
        "<!-- bench-gpu-eager:end -->\n\n<!-- bench-gpu-compile_head:start -->\n"
        "**Not yet run**\n<!-- bench-gpu-compile_head:end -->\nafter\n"
    )


def _choose_tool():
    return _load("choose_lr")


def test_choose_lr_follows_the_declared_rule():
    choose = _choose_tool().choose
    assert choose({3e-4: 35.3, 1e-3: 50.6, 3e-3: 48.0}) == 1e-3  # plain best
    assert choose({3e-4: 42.3, 1e-3: 49.4, 3e-3: 50.3}) == 3e-3  # 0.9 above: outside the margin
    assert choose({3e-4: 42.3, 1e-3: 49.9, 3e-3: 50.3}) == 1e-3  # 0.4 above: nearer 1e-3 wins
    assert choose({3e-4: 50.1, 1e-3: 40.0, 3e-3: 50.3}) == 3e-3  # equally near: higher mIoU
    assert choose({3e-4: 50.3, 1e-3: 40.0, 3e-3: 50.1}) == 3e-4


def test_choose_lr_reads_rates_from_the_runs_configs(tmp_path, capsys):
    tool = _choose_tool()
    scores = {"a": (3e-4, 0.40), "b": (1e-3, 0.497), "c": (3e-3, 0.50)}
    for folder, (lr, miou) in scores.items():
        run = tmp_path / folder / "runs" / "danet__resnet18__s0__0123abcd"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(f"optim:\n  lr: {lr}\n")
        (run / "result.json").write_text(json.dumps({"mIoU": miou}))
    folders = [str(tmp_path / f) for f in scores]
    out = tmp_path / "chosen.json"
    assert tool.main([*folders, "--models", "danet", "--json", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "danet@optim.lr=0.001"  # 0.3 below the best
    assert json.loads(out.read_text())["danet"]["lr"] == 1e-3
    (tmp_path / "b" / "runs" / "danet__resnet18__s0__0123abcd" / "result.json").unlink()
    try:
        tool.main([*folders, "--models", "danet"])
    except SystemExit as e:
        assert "0 finished seed-0 runs of danet" in str(e)
    else:
        raise AssertionError("a missing run must stop the choice")


def _lanes_tool():
    return _load("evidence_lanes")


def test_evidence_lanes_hold_a_heads_test_runs_until_its_sweep_is_finished(tmp_path, monkeypatch):
    tool = _lanes_tool()
    monkeypatch.chdir(tmp_path)
    lanes = tool.Lanes(python="python", dry_run=True)
    names = []
    while (taken := lanes.take()) not in (None, False):
        names.append(taken[0].name)
    assert len(names) == 9 and all(n.startswith("sweep") for n in names)  # tests not ready
    assert lanes.take() is False and len(lanes.jobs) == 40
    scores = {"0.0003": 0.35, "0.001": 0.50, "0.003": 0.53}  # 3e-3 is 3 points up
    for lr, miou in scores.items():
        run = tmp_path / f"runs/lr_{lr}/runs/gsag_hybrid__resnet18__s0__0123abcd"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(f"optim:\n  lr: {lr}\n")
        (run / "result.json").write_text(json.dumps({"mIoU": miou}))
    job, args = lanes.take()
    assert job.name == "test gsag_hybrid seed 0"  # the first ready one, in seed order
    assert args[-2:] == ["--set", "gsag_hybrid@optim.lr=0.003"]
    assert args[args.index("--seeds") + 1] == "0" and "data.val_split=test" in args
    assert json.loads((tmp_path / "runs/chosen_lr.json").read_text()) == {
        "gsag_hybrid": {"lr": 0.003}
    }
    assert lanes.take()[0].name == "test gsag_hybrid-no_global seed 0"  # DeepLabV3 not ready
    assert lanes.take()[0].name == "test gsag_hybrid-global_only seed 0"
    assert lanes.take()[0].name == "test gsag_hybrid seed 1"
    taken = [lanes.take() for _ in range(13)]  # the rest of hybrid's 25, then basic/incremental
    assert [t[0].name for t in taken[-3:]] == [
        "test gsag_hybrid-global_only seed 4", "test gsag_basic seed 0",
        "test gsag_incremental seed 0"]  # fmt: skip
    args = taken[-2][1]
    assert args[args.index("--models") + 1] == "gsag_basic"
    assert args[-2:] == ["--set", "gsag_basic@optim.lr=0.003"]  # at hybrid's rate
    # the no_pointwise follow-up comes last, in its own folder, at hybrid's rate
    *_, last = (lanes.take() for _ in range(13))  # basic and incremental 1-4, then these 5
    assert last[0].name == "follow-up gsag_hybrid-no_pointwise seed 4"
    args = last[1]
    assert args[args.index("--out") + 1] == "runs/test_v2_psa" and "data.val_split=test" in args
    assert args[args.index("--variants") + 1] == "no_pointwise"
    assert args[-2:] == ["--set", "gsag_hybrid@optim.lr=0.003"]
    assert lanes.take() is False  # DeepLabV3's and DANet's runs still wait for their sweeps


def test_evidence_lanes_restore_and_record_move_finished_runs_only(tmp_path):
    tool = _lanes_tool()
    done = tmp_path / "docs/results/test_v2/runs/danet__resnet18__s0__45a799a0"
    done.mkdir(parents=True)
    for name, text in [("config.yaml", "a: 1\n"), ("metrics.jsonl", "{}\n"), ("result.json", "{}")]:
        (done / name).write_text(text)
    assert tool.restore(tmp_path) == 1
    back = tmp_path / "runs/test_v2/runs/danet__resnet18__s0__45a799a0"
    assert sorted(p.name for p in back.iterdir()) == ["config.yaml", "metrics.jsonl", "result.json"]
    assert tool.restore(tmp_path) == 0  # already there: nothing copied twice
    # hybrid's test runs are restored beside the follow-up's runs too, and never recorded there
    hybrid = tmp_path / "docs/results/test_v2/runs/gsag_hybrid__resnet18__s0__b7dfd44d"
    hybrid.mkdir()
    (hybrid / "result.json").write_text("{}")
    assert tool.restore(tmp_path) == 2
    psa = tmp_path / "runs/test_v2_psa/runs"
    assert [p.name for p in psa.iterdir()] == [hybrid.name]
    ablated = psa / "gsag_hybrid-no_pointwise__resnet18__s0__cbe98235"
    ablated.mkdir()
    (ablated / "result.json").write_text("{}")
    assert tool.record(tmp_path) == (1, [])  # the follow-up's own run only
    kept = tmp_path / "docs/results/test_v2_psa/runs"
    assert [p.name for p in kept.iterdir()] == [ablated.name]
    # a finished sweep run and an unfinished test run in runs/: only the first is recorded
    sweep = tmp_path / "runs/lr_0.003/runs/gsag_hybrid__resnet18__s0__0a5cd724"
    running = tmp_path / "runs/test_v2/runs/gsag_hybrid__resnet18__s1__11112222"
    for run in (sweep, running):
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("b: 2\n")
        (run / "last.pt").write_bytes(b"weights")
    (sweep / "result.json").write_text('{"mIoU": 53.1}')
    (tmp_path / "runs/chosen_lr.json").write_text('{"gsag_hybrid": {"lr": 0.003}}')
    (tmp_path / "docs/results/lr_sweep_250").mkdir(parents=True)
    assert tool.record(tmp_path) == (1, [])
    kept = tmp_path / "docs/results/lr_sweep_250/runs/lr_0.003" / sweep.name
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml", "result.json"]  # no weights
    assert not (tmp_path / "docs/results/test_v2/runs" / running.name).exists()
    assert json.loads((tmp_path / "docs/results/lr_sweep_250/chosen_lr.json").read_text()) == {
        "gsag_hybrid": {"lr": 0.003}
    }


def _finished(run, miou=0.5, lr=None, code=None):
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"optim:\n  lr: {lr}\n" if lr else "a: 1\n")
    result = {"mIoU": miou, "environment": {"code": code} if code else {}}
    (run / "result.json").write_text(json.dumps(result))


def test_vector_grid_sweeps_two_seeds_and_takes_the_rule_on_their_mean(tmp_path, monkeypatch):
    tool = _lanes_tool()
    monkeypatch.chdir(tmp_path)
    lanes = tool.Lanes(python="python", dry_run=True, grid=tool.VECTOR)
    names = []
    while (taken := lanes.take()) not in (None, False):
        names.append(taken[0].name)
        args = taken[1]
        assert args[args.index("--seeds") + 1] in ("100", "101")
        assert "data.val_split=test" not in args  # the sweep is scored on val
    assert len(names) == 30 and names[:2] == [
        "sweep gsag_hybrid lr 0.001 seed 100", "sweep gsag_hybrid lr 0.001 seed 101"]  # fmt: skip
    assert {n.split()[1] for n in names} == {
        "gsag_hybrid",
        "fcn_pool",
        "pspnet",
        "deeplabv3",
        "danet",
    }
    assert lanes.take() is False and len(lanes.jobs) == 60  # 6 configurations x 10 seeds
    # seed 100 alone would take 1e-2 (50 against 46); the means are 49.5 (1e-3), 40.0 (3e-3)
    # and 50.0 (1e-2): 1e-3 is within the 0.5-point margin of the best and nearest 1e-3
    scores = {"0.001": (0.46, 0.53), "0.003": (0.40, 0.40), "0.01": (0.50, 0.50)}
    for lr, pair in scores.items():
        for seed, miou in zip((100, 101), pair, strict=True):
            run = tmp_path / f"runs/v3_lr_{lr}/runs/gsag_hybrid__resnet18__s{seed}__0123abcd"
            _finished(run, miou, lr)
    job, args = lanes.take()
    assert job.name == "test gsag_hybrid seed 5"
    assert args[-2:] == ["--set", "gsag_hybrid@optim.lr=0.001"]  # mean 49.5 vs 50.0
    assert args[args.index("--out") + 1] == "runs/v3_test" and "data.val_split=test" in args
    job, args = lanes.take()
    assert job.name == "test gsag_hybrid-no_global seed 5"
    assert args[args.index("--variants") + 1] == "no_global"
    assert args[-2:] == ["--set", "gsag_hybrid@optim.lr=0.001"]
    assert lanes.take()[0].name == "test gsag_hybrid seed 6"  # the other heads' sweeps wait
    assert json.loads((tmp_path / "runs/v3_chosen_lr.json").read_text()) == {
        "gsag_hybrid": {"lr": 0.001}
    }


def test_vector_grid_takes_only_runs_of_its_commit(tmp_path):
    tool = _lanes_tool()
    grid = tool.VECTOR
    ours = {"commit": "a" * 40, "dirty": False}
    runs = tmp_path / "grid/runs/v3_test/runs"
    _finished(runs / "gsag_hybrid__resnet18__s5__00000001", code=ours)
    _finished(runs / "pspnet__resnet18__s5__00000002", code={"commit": "b" * 40, "dirty": False})
    _finished(runs / "danet__resnet18__s5__00000003", code={"commit": "a" * 40, "dirty": True})
    _finished(runs / "fcn_pool__resnet18__s5__00000004")  # no code version recorded
    main = tmp_path / "main"
    main.mkdir()
    try:
        tool.record(main, grid, tmp_path / "grid")
    except SystemExit as e:
        assert "COMMIT is missing" in str(e)
    else:
        raise AssertionError("record must need the declared commit")
    (main / grid.commit_file).parent.mkdir(parents=True)
    (main / grid.commit_file).write_text("a" * 40 + "\n")
    n, refused = tool.record(main, grid, tmp_path / "grid")
    assert n == 1 and sorted(p.name for p in refused) == [
        "danet__resnet18__s5__00000003", "fcn_pool__resnet18__s5__00000004",
        "pspnet__resnet18__s5__00000002"]  # fmt: skip
    kept = main / "docs/results/vector_v3/test/runs"
    assert [p.name for p in kept.iterdir()] == ["gsag_hybrid__resnet18__s5__00000001"]
    # a fresh worktree restores only runs of its own commit
    fresh = tmp_path / "fresh"
    assert tool.restore(fresh, grid, main, commit="a" * 40) == 1
    assert tool.restore(tmp_path / "other", grid, main, commit="c" * 40) == 0


def test_vector_grid_refuses_a_dirty_checkout(tmp_path):
    import subprocess

    tool = _lanes_tool()

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git(
        "-c",
        "user.email=t@example.com",
        "-c",
        "user.name=t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    assert len(tool.clean_commit(tmp_path)) == 40
    (tmp_path / "new.py").write_text("x = 1\n")
    try:
        tool.clean_commit(tmp_path)
    except SystemExit as e:
        assert "dirty True" in str(e) and "git worktree add" in str(e)
    else:
        raise AssertionError("a dirty tree must be refused")
