#!/usr/bin/env bash
# `gsag demo` into a fresh folder (its own data too), idle and beside two CPU burners
# (`python -c "while True: pass"`, started here: the same login session), alternately;
# the wall time of each from the shell. Usage: demo_goal.sh OUT_DIR [ORDER...] (idle|busy).
set -u
out=$1; shift
mkdir -p "$out"
for kind in "$@"; do
    n=$(ls "$out" | grep -c "^$kind" || true)
    dir="$out/$kind$n"
    pids=()
    if [ "$kind" = busy ]; then
        for _ in 1 2; do python3 -c "while True: pass" & pids+=($!); done
        sleep 2
    fi
    echo "$kind$n: start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    t0=$(date +%s.%N)
    .venv/bin/python -m gsag demo --out "$dir" --set "data.root=$dir/data" > "$dir.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    for p in "${pids[@]}"; do kill "$p"; done
    echo "$kind$n: rc $rc wall $(python3 -c "print(round($t1 - $t0, 1))") s end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
done
