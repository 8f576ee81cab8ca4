#!/bin/bash
# The evidence grid's lanes (docs/results.md, "A fair recipe, on the test split"), in two lanes
# side by side on a 2-core CPU, from the repository root. Rerunning it skips finished runs and
# resumes an unfinished one from its last.pt. PY: the python that runs gsag (default: python).
#   1. learning-rate sweep: seed 0, val, data generated with seed 0;
#   2. tools/choose_lr.py picks each head's rate by the declared rule;
#   3. five seeds on the test split, one generated dataset per seed; hybrid's no_global and
#      global_only at hybrid's rate.
set -u
PY=${PY:-python}
NICE="nice -n 19"
for k in 0 1 2 3 4; do
  [ -f runs/ctx_v2_d$k/classes.yaml ] || $PY -m gsag data synth --seed $k --out runs/ctx_v2_d$k --quiet
done
C="--config configs/demo.yaml --backbones resnet18 --set data.synthetic=false --threads 1 --device cpu"
S="$C --set data.root=runs/ctx_v2_d0 --seeds 0"
H="gsag_hybrid deeplabv3 danet"
mkdir -p runs
(
  $NICE $PY -m gsag ablate $S --out runs/lr_0.0003 --set optim.lr=0.0003 --models $H
  $NICE $PY -m gsag ablate $S --out runs/lr_0.001 --set optim.lr=0.001 --models gsag_hybrid
) >> runs/laneA.log 2>&1 &
(
  $NICE $PY -m gsag ablate $S --out runs/lr_0.003 --set optim.lr=0.003 --models $H
  $NICE $PY -m gsag ablate $S --out runs/lr_0.001 --set optim.lr=0.001 --models deeplabv3 danet
) >> runs/laneB.log 2>&1 &
wait
LR=$($PY tools/choose_lr.py runs/lr_0.0003 runs/lr_0.001 runs/lr_0.003 --models $H \
     --json runs/chosen_lr.json) || exit 1
echo "chosen: $LR"
T="$C --out runs/test_v2 --set data.root=runs/ctx_v2_d{seed} --set data.val_split=test --set $LR"
(
  $NICE $PY -m gsag ablate $T --models gsag_hybrid --variants base no_global --seeds 0 1 2 3 4
  $NICE $PY -m gsag ablate $T --models gsag_hybrid --variants global_only --seeds 0 1
) >> runs/laneA.log 2>&1 &
(
  $NICE $PY -m gsag ablate $T --models deeplabv3 danet --seeds 0 1 2 3 4
  $NICE $PY -m gsag ablate $T --models gsag_hybrid --variants global_only --seeds 2 3 4
) >> runs/laneB.log 2>&1 &
wait
# one report over the test runs: families, Holm, rank intervals, cue-learning rates
$PY -m gsag ablate $T --models $H --variants base no_global global_only --seeds 0 1 2 3 4 \
    --report-only
