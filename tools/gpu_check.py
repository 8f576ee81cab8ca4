"""One GPU session's checks in at most 8 minutes, most valuable first, each step under a limit
made of its measured CPU-trace time plus an allowance for what only a GPU compiles and runs.

What comes back is the output folder, and it holds only `FILES` (fixed names, rewritten after
every step and every `REFRESH_S` seconds while one runs; the steps' own files are written to a
work folder outside it and bundled):

    summary.json   the answer so far: per step rc (124: killed at its limit), seconds, CPU
                   seconds, limit and its parts, headline numbers; the running step too
    steps.jsonl    one line per step: its command, its result files (bench.json, psa.json,
                   environment.json) as JSON, the tail of its output
    gpu_check.log  this script's lines and every step's output (the last 512 KiB of each)
    bench.md       the bench tables for docs/bench.md's GPU sections (`gsag bench
                   --update-doc`); `python3 tools/gpu_check.py apply OUT` copies them there

    python3 tools/gpu_check.py [--out DIR] [--budget 480]         # the GPU run (gpu_check.sh)
    python3 tools/gpu_check.py --dry-run --out DIR                # tiny, on CPU (the tests)
    python3 tools/gpu_check.py --dry-run --backbone resnet50 --out DIR   # CPU-trace times
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILES = ("summary.json", "steps.jsonl", "gpu_check.log", "bench.md")
BUDGET_S = 480  # of a GPU session's 15 minutes; one command may run 10
REFRESH_S = 10.0
LOG_TAIL = 512 * 1024
TARGETS = ("gsag_hybrid", "gsag_basic", "gsag_incremental")  # gsag bench adds deeplabv3
SECTIONS = {"bench_eager": "bench-gpu-eager", "bench_compile_model": "bench-gpu-compile_model",
            "bench_compile_head": "bench-gpu-compile_head"}  # fmt: skip
FALLBACK = "the Triton local-attention kernel failed"  # gsag's warning when "auto" falls back
# Per step, seconds: (CPU-trace time, compile allowance, run allowance); limit = their sum.
# Trace: the step's CPU seconds in a dry run at the GPU run's backbone (ResNet-50) and models,
# record docs/results/gpu_check_trace (it includes dynamo's tracing; on CPU "auto" traces the
# reference's unrolled offset loop, on a GPU one custom-op node, so it overstates).
# Compile, guessed (no GPU yet; a GPU run's summary.json will replace them): 4 s per Triton kernel
# (1-3 s ahead of time on this project's CPU, docs/model.md), 25 s per inductor compile of a
# head or of the PSA reference, 60 s per whole ResNet-50 model. Run: the timed GPU work and
# 5 s to start CUDA in the step's process.
LIMITS = {
    "environment": (3, 0, 6),
    "psa_bench": (6, 3 * 4 + 2 * 25, 15),  # Triton fwd + 2 bwd; reference fwd+bwd, no-grad
    "bench_eager": (16, 3 * 4, 30),  # the hybrid PSA's kernels once, then cached in-process
    "bench_compile_model": (14, 2 * 60, 20),  # gsag_hybrid, deeplabv3
    "bench_compile_head": (12, 4 * 25, 20),  # basic, incremental, hybrid, deeplabv3
    "pytest_local_attention": (3, 0, 0),  # gets what is left: 11 kernel tests vs the reference
}


@dataclass
class Step:
    name: str
    command: list[str]
    trace_s: float
    compile_s: float
    run_s: float
    results: tuple[str, ...] = ()  # files the step writes into the work folder

    @property
    def limit_s(self) -> float:
        return self.trace_s + self.compile_s + self.run_s


def _bench(name: str, work: Path, out: Path, backbone: str | None, *options: str) -> Step:
    """A `gsag bench` step; its table goes into OUT/bench.md's section, never the repository."""
    if backbone is None:  # the GPU run
        common = ["--device", "cuda", "--backbones", "resnet50", "--amp", "bf16",
                  "--channels-last", "--warmup", "3", "--sizes", "512", "--batch", "8",
                  "--rounds", "3", "--repeats", "5"]  # fmt: skip
    else:  # on CPU at 64x64: the tests (test backbone) and the trace (the GPU run's backbone)
        common = ["--device", "cpu", "--backbones", backbone, "--sizes", "64", "--batch", "1",
                  "--rounds", "1", "--repeats", "1", "--warmup", "0", "--no-memory",
                  "--threads", "1", "--compile-backend", "eager"]  # fmt: skip
        options = tuple("1" if o == "3" else o for o in options)  # one training step
    folder = work / name
    cmd = [sys.executable, "-m", "gsag", "bench", *common, *options, "--out", str(folder),
           "--update-doc", str(out / "bench.md"), "--doc-section", SECTIONS[name]]  # fmt: skip
    return Step(name, cmd, *LIMITS[name], results=(f"{name}/bench.json",))


def steps(work: Path, out: Path, backbone: str | None = None) -> list[Step]:
    """The steps in order of value; `backbone` set: the CPU dry run at that backbone."""
    py, tool = sys.executable, str(Path(__file__))
    dry = ["--dry-run"] if backbone else []
    models = ["--models", *(TARGETS if backbone != "test_resnet" else TARGETS[1:2])]
    hybrid = ["--models", TARGETS[0]]
    train = ["--no-train"] if backbone == "test_resnet" else ["--train-repeats", "3"]
    pytest = [py, "-m", "pytest", "-m", "gpu", "-x", "-v", "-rA", "-p", "no:cacheprovider",
              "tests/models/test_local_attention.py"]  # fmt: skip
    return [
        Step("environment", [py, tool, "environment", str(work / "environment.json")],
             *LIMITS["environment"], results=("environment.json",)),
        Step("psa_bench", [py, tool, "psa", str(work / "psa.json"), *dry], *LIMITS["psa_bench"],
             results=("psa.json",)),
        _bench("bench_eager", work, out, backbone, *models, "--compile", "none", *train),
        _bench("bench_compile_model", work, out, backbone, *hybrid, "--compile", "model",
               "--no-train"),
        _bench("bench_compile_head", work, out, backbone, *models, "--compile", "head",
               "--no-train"),
        Step("pytest_local_attention", pytest, *LIMITS["pytest_local_attention"]),
    ]  # fmt: skip


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or half-written
        return None


def headline(step: Step, work: Path, log: str) -> dict:
    """The numbers that matter from a finished, running or killed step."""
    if step.name.startswith("pytest"):  # -v: a line per test as it ends, so a kill keeps them
        ends = re.findall(r"^\S+::(\S+) (PASSED|FAILED|SKIPPED|ERROR)", log, re.M)
        counts = {kind.lower(): sum(k == kind for _, k in ends) for kind in {k for _, k in ends}}
        failed = [name for name, kind in ends if kind in ("FAILED", "ERROR")]
        return counts | ({"first_failure": failed[0]} if failed else {})
    data = _load(work / step.results[0]) if step.results else None
    if data is None:
        return {}
    if step.name == "environment":
        keys = ("gpu", "cpu", "torch", "cuda", "triton", "capability", "memory_gib", "code")
        return {k: data.get(k) for k in keys}
    if step.name == "psa_bench":
        return {impl: {k: float(f"{v:.4g}") for k, v in row.items()} for impl, row in data.items()}
    rows = data["rows"]
    lat = "cpu_ms" if data["environment"]["device"] == "cpu" else "latency_ms"

    def timed(r: dict) -> bool:
        return r[lat] is not None and r[lat] == r[lat]  # NaN: not timed yet

    return {
        "rows": len(rows),
        "errors": {r["model"]: r["error"] for r in rows if r["error"]},
        "ms": {f"{r['model']} {r['compile']}": round(r[lat], 2) for r in rows if timed(r)},
        "x_deeplabv3": {r["model"]: round(r["ratios"][lat], 3) for r in rows if lat in r["ratios"]},
        "compile_s": {r["model"]: r["compile_s"] for r in rows if r["compile_s"]},
        "warmup_ms_untimed": {r["model"]: r["warmup_ms"] for r in rows
                              if r["warmup_ms"] and not timed(r)},
        "kernel_fell_back": FALLBACK in log,
    }  # fmt: skip


class Stopped(Exception):
    """SIGTERM: the session's limit came first. The running step is killed, the files written."""


def _stop(signum, frame) -> None:
    raise Stopped


@dataclass
class Record:
    """One step's state: what summary.json and steps.jsonl say of it."""

    step: Step
    log: Path
    started: float
    limit: float
    rc: int | str | None = None  # None while it runs
    seconds: float = 0.0
    cpu_s: float = 0.0

    def log_text(self) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, self.log.stat().st_size - LOG_TAIL))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def result(self, work: Path) -> dict:
        s, text = self.step, self.log_text()
        try:
            numbers = headline(s, work, text)
        except (ValueError, KeyError, TypeError) as err:  # a file half-written: say so
            numbers = {"headline_error": f"{type(err).__name__}: {err}"}
        return {"step": s.name, "rc": self.rc, "running": self.rc is None,
                "seconds": round(self.seconds, 1), "cpu_s": round(self.cpu_s, 1),
                "limit_s": round(self.limit), "trace_s": s.trace_s, "compile_s": s.compile_s,
                "run_s": s.run_s, "headline": numbers}  # fmt: skip


def write_outputs(out: Path, work: Path, records: list[Record], header: dict) -> None:
    """Rewrite summary.json, steps.jsonl and gpu_check.log from the records so far."""
    from gsag.atomic import json_safe, write_text

    results = [r.result(work) for r in records]
    summary = json_safe(header | {"steps": results})
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    lines, log = [], [json.dumps(json_safe(header))]
    for rec, res in zip(records, results, strict=True):
        files = {name: _load(work / name) for name in rec.step.results}
        tail = rec.log_text()
        lines.append(json.dumps(json_safe(res | {"command": rec.step.command, "results": files,
                                                 "log_tail": tail[-20000:]})))  # fmt: skip
        log.append(f"== {rec.step.name}: rc {res['rc']} in {res['seconds']}s (CPU {res['cpu_s']}s;"
                   f" limit {res['limit_s']}s = trace {rec.step.trace_s} + compile "
                   f"{rec.step.compile_s} + run {rec.step.run_s})\n{tail}")  # fmt: skip
    write_text(out / "steps.jsonl", "\n".join(lines) + "\n")
    write_text(out / "gpu_check.log", "\n".join(log) + "\n")


def run_step(rec: Record, refresh) -> None:
    """Run the step, killing its process group at rec.limit (rc 124) or on `Stopped`;
    `refresh()` every REFRESH_S seconds meanwhile."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(rec.log, "wb") as log:
        proc = subprocess.Popen(rec.step.command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)  # fmt: skip
        try:
            refresh()  # summary.json names the running step from its start
            while rec.rc is None:
                left = rec.limit - (time.monotonic() - rec.started)
                try:
                    rec.rc = proc.wait(timeout=max(0.0, min(REFRESH_S, left)))
                except subprocess.TimeoutExpired:
                    if left <= REFRESH_S:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                        rec.rc = 124
                rec.seconds = time.monotonic() - rec.started
                if rec.rc is None:
                    refresh()
        except Stopped:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rec.rc = "stopped"
            raise
        finally:
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            rec.cpu_s = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
            rec.seconds = time.monotonic() - rec.started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu_check"))
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all steps")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny, on CPU (the tests); no step limits, only --budget")  # fmt: skip
    parser.add_argument("--backbone", default="test_resnet", help="of the dry run")
    parser.add_argument("--work", help="the steps' own files (default: a temporary folder)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    backbone = args.backbone if args.dry_run else None
    plan = steps(work, out, backbone)
    _start_doc(out / "bench.md")
    header = {"dry_run": args.dry_run, "backbone": backbone or "resnet50", "budget_s": args.budget,
              "work": str(work), "files": FILES}  # fmt: skip
    deadline = time.monotonic() + args.budget
    records: list[Record] = []
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        for i, step in enumerate(plan):
            left = deadline - time.monotonic()
            last = i == len(plan) - 1 or args.dry_run  # a CPU's seconds are not the GPU's
            limit = left if last else min(step.limit_s, left)
            rec = Record(step, work / f"{step.name}.log", time.monotonic(), limit)
            records.append(rec)
            if left < 5:
                rec.rc = "skipped: no time left"
            else:
                print(f"== {step.name}: limit {round(limit)}s (trace {step.trace_s} + compile "
                      f"{step.compile_s} + run {step.run_s})", flush=True)  # fmt: skip
                run_step(rec, lambda: write_outputs(out, work, records, header))
            write_outputs(out, work, records, header)
            print(f"   {step.name}: rc {rec.rc} in {rec.seconds:.1f}s", flush=True)
    except Stopped:
        write_outputs(out, work, records, header | {"stopped": "SIGTERM"})
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if all(r.rc == 0 for r in records) else 1


def _start_doc(path: Path) -> None:
    """OUT/bench.md with an empty section per bench step, for `gsag bench --update-doc`."""
    from gsag.atomic import write_text

    text = "\n".join(
        f"<!-- {s}:start -->\nnot yet run\n<!-- {s}:end -->\n" for s in SECTIONS.values()
    )
    write_text(path, text)


if __name__ == "__main__":
    from gpu_check_steps import SUBCOMMANDS  # tools/, the script's folder, is on sys.path

    command = sys.argv[1] if len(sys.argv) > 1 else ""
    sys.exit(SUBCOMMANDS[command](sys.argv[2:]) if command in SUBCOMMANDS else main())
