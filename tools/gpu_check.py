"""One GPU session's checks, most valuable first, each with its own time limit; always leaves
an answer in OUT/summary.json (step, rc, seconds, estimate, limit, headline numbers), rewritten
after every step, and every step's output in OUT/NAME.log.

    python tools/gpu_check.py [--out DIR] [--budget 570]      # the GPU run (tools/gpu_check.sh)
    python tools/gpu_check.py --dry-run --out DIR             # the same steps, tiny, on CPU

rc 124 means the step hit its limit; bench steps keep the rows they finished (gsag bench writes
bench.json after each phase). The estimates are guesses for one H100/H200 (no GPU was available
when they were written); the log and summary.json set them beside the measured seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Step:
    name: str
    estimate_s: int  # expected seconds on the GPU (a guess until measured)
    limit_s: int  # killed after this
    command: list[str]
    out: str = ""  # bench folder or json file whose numbers make the headline
    result: dict = field(default_factory=dict)


def _bench(name: str, est: int, limit: int, out: Path, dry: bool, *options: str) -> Step:
    """A `gsag bench` step; on the GPU it also fills docs/bench.md's section `bench-gpu-...`."""
    if dry:  # tiny and on CPU: the script's own test
        common = ["--device", "cpu", "--backbones", "test_resnet", "--sizes", "64", "--batch", "1",
                  "--rounds", "1", "--repeats", "1", "--warmup", "0", "--no-memory", "--no-train",
                  "--compile-backend", "eager", "--models", "gsag_basic"]  # fmt: skip
        options = tuple(o for o in options if o not in ("--torchvision-peer",))
        options = _drop(
            options, "--models", "--sizes", "--batch", "--rounds", "--repeats", "--train-repeats"
        )
    else:
        common = ["--device", "cuda", "--backbones", "resnet50", "--amp", "bf16",
                  "--channels-last", "--warmup", "3", "--update-doc", "docs/bench.md",
                  "--doc-section", f"bench-gpu-{name.removeprefix('bench_')}"]  # fmt: skip
    folder = out / name
    cmd = [sys.executable, "-m", "gsag", "bench", *common, *options, "--out", str(folder)]
    return Step(name, est, limit, cmd, str(folder / "bench.json"))


def _drop(options: tuple[str, ...], *names: str) -> tuple[str, ...]:
    """options without the named flags and the values that follow them."""
    kept, skipping = [], False
    for o in options:
        skipping = o in names or (skipping and not o.startswith("--"))
        if not skipping:
            kept.append(o)
    return tuple(kept)


def steps(out: Path, dry: bool) -> list[Step]:
    """The steps in order of value. Limits sum to under 570 s, inside a 10-minute slot."""
    py = sys.executable
    gsag = ["--models", "gsag_basic", "gsag_incremental", "gsag_hybrid"]  # + deeplabv3
    size = ["--sizes", "512", "--batch", "8", "--rounds", "3", "--repeats", "5"]
    return [
        Step("environment", 10, 30, [py, str(Path(__file__)), "environment"]),
        Step("pytest_local_attention", 60, 110,
             [py, "-m", "pytest", "-m", "gpu", "-x", "-rA", "-p", "no:cacheprovider",
              "tests/models/test_local_attention.py"]),
        Step("psa_bench", 40, 75,
             [py, str(Path(__file__)), "psa", "--out", str(out / "psa.json")]
             + (["--dry-run"] if dry else []), str(out / "psa.json")),
        _bench("bench_eager", 60, 90, out, dry, *size, "--torchvision-peer", "--compile", "none",
               "--train-repeats", "3"),
        _bench("bench_compile_head", 90, 120, out, dry, *size, *gsag, "--compile", "head",
               "--no-train"),
        _bench("bench_compile_model", 80, 100, out, dry, *size, "--models", "gsag_hybrid",
               "--compile", "model", "--no-train"),
        Step("pytest_gpu", 40, 45,
             [py, "-m", "pytest", "-m", "gpu", "-x", "-rA", "-p", "no:cacheprovider",
              "tests/test_gpu.py", "tests/test_bench.py"]),
    ]  # fmt: skip


def headline(step: Step, log: str) -> dict:
    """The numbers that matter from a finished (or stopped) step."""
    if step.name.startswith("pytest"):
        counts = re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", log[-2000:])
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", log, re.M)
        return {kind: int(n) for n, kind in counts} | (
            {"first_failure": failed[0]} if failed else {}
        )
    if not step.out or not Path(step.out).exists():
        return {}
    data = json.loads(Path(step.out).read_text())
    if step.name == "psa_bench":
        return {impl: {k: round(v, 3) for k, v in row.items()} for impl, row in data.items()}
    rows = data["rows"]
    lat = "cpu_ms" if data["environment"]["device"] == "cpu" else "latency_ms"
    return {
        "rows": len(rows),
        "errors": {r["model"]: r["error"] for r in rows if r["error"]},
        "ms": {f"{r['model']} {r['compile']}": round(r[lat], 2) for r in rows if not r["error"]},
        "x_deeplabv3": {
            r["model"]: round(r["ratios"][lat], 3) for r in rows if lat in r.get("ratios", {})
        },
    }


def run_step(step: Step, out: Path, limit: float) -> None:
    """Run with a limit (the whole process group is killed at it); fill step.result."""
    t0 = time.monotonic()
    with open(out / f"{step.name}.log", "w") as log:
        proc = subprocess.Popen(step.command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = 124
    text = (out / f"{step.name}.log").read_text(errors="replace")
    seconds = round(time.monotonic() - t0, 1)
    try:
        numbers = headline(step, text)
    except (ValueError, KeyError, OSError) as err:  # a half-written file: say so, go on
        numbers = {"headline_error": f"{type(err).__name__}: {err}"}
    step.result = {"step": step.name, "rc": rc, "seconds": seconds,
                   "estimate_s": step.estimate_s, "limit_s": round(limit), "headline": numbers}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu_check"))
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for all steps")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (the test)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from gsag.atomic import write_text

    deadline = time.monotonic() + args.budget
    results: list[dict] = []
    with open(out / "gpu_check.log", "w") as log:
        for step in steps(out, args.dry_run):
            limit = min(step.limit_s, deadline - time.monotonic())
            line = f"== {step.name}: estimate {step.estimate_s}s, limit {round(limit)}s"
            if limit < 5:
                step.result = {
                    "step": step.name,
                    "rc": None,
                    "seconds": 0,
                    "skipped": "no time left",
                }
            else:
                print(line, flush=True)
                log.write(line + "\n")
                run_step(step, out, limit)
            results.append(step.result)
            done = f"   {step.name}: rc {step.result['rc']} in {step.result['seconds']}s"
            print(done, json.dumps(step.result.get("headline", {}))[:400], flush=True)
            log.write(done + f" (estimate {step.estimate_s}s)\n")
            log.flush()
            summary = {"dry_run": args.dry_run, "steps": results}
            write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return 0 if all(r["rc"] == 0 for r in results) else 1


def environment() -> int:
    """Versions and the device: the facts the other steps' numbers depend on."""
    import torch

    from gsag.bench import environment as env
    from gsag.models.local_attention import triton_available

    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = env(device) | {"cuda": torch.version.cuda, "triton": None}
    if triton_available():
        import triton

        info["triton"] = triton.__version__
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info |= {
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": props.total_memory / 2**30,
        }
    print(json.dumps(info, indent=2))
    smi = [
        "nvidia-smi",
        "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
        "--format=csv",
    ]
    try:
        print(subprocess.run(smi, capture_output=True, text=True, timeout=10).stdout)
    except (OSError, subprocess.SubprocessError) as err:
        print(f"nvidia-smi: {err}")
    return 0


def psa(argv: list[str]) -> int:
    """The PSA micro-benchmark into a json file (gsag.bench.psa)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    import torch

    from gsag.atomic import write_text
    from gsag.bench.psa import benchmark_local_attention

    if args.dry_run:
        rows = benchmark_local_attention(batch=1, heads=2, size=(8, 8), head_dim=4, kernel_size=3,
                                         device="cpu",
                                         dtype=torch.float32, impls=("reference", "reference_compiled"),
                                         min_run_time=0.01, compile_backend="eager")  # fmt: skip
    else:
        rows = benchmark_local_attention(min_run_time=0.5)
    write_text(Path(args.out), json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["environment"]:
        sys.exit(environment())
    if sys.argv[1:2] == ["psa"]:
        sys.exit(psa(sys.argv[2:]))
    sys.exit(main())
