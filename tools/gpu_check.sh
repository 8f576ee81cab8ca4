#!/usr/bin/env bash
# One GPU session's checks in at most 8 minutes (tools/gpu_check.py says what and how); the
# output folder gets at most 8 files, summary.json the answer so far:
#
#   tools/gpu_check.sh [--out OUT_DIR] [--budget SECONDS]   # default OUT_DIR: $OUT or runs/gpu_check
#   tools/gpu_check.sh --dry-run --out /tmp/x               # tiny, on CPU: what the tests run
#
# The interpreter: $PYTHON if set, else python3, else python; the first that imports torch.
set -u
cd "$(dirname "$0")/.."
for py in ${PYTHON:+"$PYTHON"} python3 python; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c "import torch" >/dev/null 2>&1; then
        exec "$py" tools/gpu_check.py "$@"
    fi
done
echo "error: none of ${PYTHON:+\$PYTHON ($PYTHON), }python3, python can import torch; install PyTorch for one of them or set PYTHON=/path/to/python" >&2
exit 1
