#!/usr/bin/env bash
# One GPU session's checks, in about 8 minutes on one H100: the gpu tests, then the target
# benchmark of issue 9 (bf16, channels_last, ResNet-50-D8, all six heads + torchvision's
# deeplabv3_resnet50, ratios to DeepLabV3 from the same run).
#
#   tools/gpu_check.sh [OUT_DIR]        # default: $OUT if set, else runs/gpu_check
#
# Each step has its own time limit, so a slow step cannot eat the others. Cheapest first: the
# eager-only table (all models), then the compiled ("--best") tables, whose compile time is the
# unknown (one compile per model and mode, forward and backward): they time the models the
# targets name (GSAG basic, incremental, hybrid; DeepLabV3 is always added). The limits are
# estimates, not measurements: no GPU was available when this script was written.
# Every bench step fills its own section of docs/bench.md (--update-doc); a copy of the doc,
# the bench.json/bench.md of each step and the logs land in OUT_DIR.
set -u
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu_check}}"
mkdir -p "$out"
export PYTHONPATH="$PWD"
py="${PYTHON:-python}"
common=(--device cuda --backbones resnet50 --amp bf16 --channels-last --warmup 3
        --update-doc docs/bench.md)
all=(--torchvision-peer)  # the default --models: every model
gsag=(--models gsag_basic gsag_incremental gsag_hybrid)  # + deeplabv3, always

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to OUT_DIR/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "   rc=$rc in $((SECONDS - t0))s; tail:"
    tail -n 5 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1
step pytest_gpu 120 "$py" -m pytest -m gpu -q -p no:cacheprovider tests
step bench_eager 60 "$py" -m gsag bench "${common[@]}" "${all[@]}" --sizes 512 --batch 8 \
    --compile none --rounds 5 --repeats 5 --train-repeats 3 --out "$out/bench_eager" \
    --doc-section bench-gpu-eager
step bench_best_512 180 "$py" -m gsag bench "${common[@]}" "${gsag[@]}" --sizes 512 --batch 8 \
    --best --rounds 5 --repeats 5 --train-repeats 3 --out "$out/bench_best_512" \
    --doc-section bench-gpu
step bench_best_2k 90 "$py" -m gsag bench "${common[@]}" "${gsag[@]}" --sizes 1024x2048 \
    --batch 1 --best --no-train --rounds 5 --repeats 5 --out "$out/bench_best_2k" \
    --doc-section bench-gpu-2k
cp docs/bench.md "$out/bench_doc.md"
echo "done: outputs in $out; docs/bench.md updated in place"
