"""What tools/gpu_check.py's own steps run, and bringing its tables home:

python3 tools/gpu_check.py environment FILE.json    # versions and the device
python3 tools/gpu_check.py psa FILE.json [--dry-run] # the PSA micro-benchmark
python3 tools/gpu_check.py apply OUT [--doc docs/bench.md]   # OUT/bench.md's sections
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _write(path: str, data: dict) -> None:
    from gsag.atomic import json_safe, write_text

    write_text(Path(path), json.dumps(json_safe(data), indent=2) + "\n")


def environment(argv: list[str]) -> int:
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
        info |= {"capability": f"{props.major}.{props.minor}",
                 "memory_gib": round(props.total_memory / 2**30, 1)}  # fmt: skip
    smi = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
           "--format=csv"]  # fmt: skip
    try:
        info["nvidia_smi"] = subprocess.run(smi, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as err:
        info["nvidia_smi"] = f"{type(err).__name__}: {err}"
    _write(argv[0], info)
    print(json.dumps(info, indent=2))
    return 0


def psa(argv: list[str]) -> int:
    """The PSA micro-benchmark (gsag.bench.psa), Triton first, written after each
    implementation."""
    parser = argparse.ArgumentParser(prog="gpu_check.py psa")
    parser.add_argument("out")
    parser.add_argument("--dry-run", action="store_true", help="tiny, on CPU, no Triton")
    args = parser.parse_args(argv)
    import torch

    from gsag.bench.psa import benchmark_local_attention

    def write(rows: dict) -> None:
        _write(args.out, rows)
        print(f"{list(rows)[-1]}: {json.dumps(rows[list(rows)[-1]])}", flush=True)

    if args.dry_run:
        benchmark_local_attention(batch=1, heads=2, size=(8, 8), head_dim=4, kernel_size=3,
                                  device="cpu", dtype=torch.float32,
                                  impls=("reference", "reference_compiled"), min_run_time=0.01,
                                  compile_backend="eager", on_impl=write)  # fmt: skip
    else:
        benchmark_local_attention(min_run_time=0.5, on_impl=write)
    return 0


def apply(argv: list[str]) -> int:
    """Copy the tables of OUT/bench.md's sections into the doc's sections of the same names
    (those still "not yet run" in OUT are left alone)."""
    parser = argparse.ArgumentParser(prog="gpu_check.py apply")
    parser.add_argument("out", help="the GPU check's output folder")
    parser.add_argument("--doc", default=str(ROOT / "docs/bench.md"))
    args = parser.parse_args(argv)
    from gsag.commands.bench import _update_doc

    text = (Path(args.out) / "bench.md").read_text(encoding="utf-8")
    pattern = r"<!-- (\S+):start -->\n(.*?)<!-- \1:end -->"
    for section, table in re.findall(pattern, text, re.S):
        if table.strip() != "not yet run":
            _update_doc(Path(args.doc), table, section)
            print(f"{args.doc}: section {section} updated")
    return 0


SUBCOMMANDS = {"environment": environment, "psa": psa, "apply": apply}
