#!/usr/bin/env bash
# One GPU session's checks in at most ~10 minutes, most valuable first, each step with its own
# time limit; OUT_DIR/summary.json always holds the answer so far (see tools/gpu_check.py):
#
#   tools/gpu_check.sh [--out OUT_DIR] [--budget SECONDS]   # default OUT_DIR: $OUT or runs/gpu_check
#   tools/gpu_check.sh --dry-run --out /tmp/x               # tiny, on CPU: what the tests run
#
# Steps: environment; the local-attention gpu tests (-x -rA); the PSA micro-benchmark
# (reference, compiled reference, Triton; ms and GB/s); the eager table; the --compile head
# table; the --compile model table (gsag_hybrid); the other gpu tests. Bench steps fill their
# sections of docs/bench.md (bench-gpu-eager, bench-gpu-compile_head, bench-gpu-compile_model).
set -u
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" tools/gpu_check.py "$@"
