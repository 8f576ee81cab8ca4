"""`gsag ablate`: train and evaluate a grid of models x backbones x variants x seeds with one
config, and summarise it. One module per job:

- `grid`: the cells of the grid and the resolved config of each (`resolve_combo`);
- `records`: each run's result.json and the fingerprint that names its folder;
- `run`: training the grid (`run_ablation`), skipping finished runs;
- `analysis`: summaries over seeds, comparisons (unpaired, and paired by seed) and cue learning;
- `report` and `plots`: results.json, results.md and the figures.

Layout of the output folder:

    OUT/runs/<label>__<backbone>__s<seed>__<fingerprint>/   one training run (engine run folder);
                                             <label> is the model, or <model>-<variant> for a
                                             named variant
        result.json                          written last: its presence marks the run finished
    OUT/results.json, OUT/results.md         mean ± std over seeds per model x backbone
    OUT/miou.png, OUT/curves.png, OUT/per_class_iou.png
"""

from __future__ import annotations

from gsag.ablate.analysis import (
    CUE_PAIR,
    CUE_THRESHOLD,
    CUE_THRESHOLDS,
    EXTRA_PAIRS,
    comparisons,
    cue_accuracy,
    cue_rows,
    cue_tests,
    pair_accuracy,
    paired_comparisons,
    shared_seeds,
    summarise,
)
from gsag.ablate.grid import (
    BASE,
    SEED_FIELD,
    VARIANTS,
    Combo,
    combo_overrides,
    grid,
    model_kwargs_for,
    overrides_for,
    resolve_combo,
)
from gsag.ablate.records import (
    FINGERPRINT_IGNORES,
    RESULT_FILE,
    data_identity,
    find_recorded,
    fingerprint,
    recipe,
)
from gsag.ablate.report import (
    comparisons_markdown,
    cue_markdown,
    cue_tests_markdown,
    paired_markdown,
    results_markdown,
    write_report,
)
from gsag.ablate.run import run_ablation, run_combo

__all__ = [
    "BASE", "CUE_PAIR", "CUE_THRESHOLD", "CUE_THRESHOLDS", "EXTRA_PAIRS", "FINGERPRINT_IGNORES", "RESULT_FILE",
    "SEED_FIELD", "VARIANTS", "Combo", "combo_overrides", "comparisons", "comparisons_markdown",
    "cue_accuracy", "cue_markdown", "cue_rows", "cue_tests", "cue_tests_markdown", "data_identity", "find_recorded", "fingerprint",
    "grid", "model_kwargs_for", "overrides_for", "pair_accuracy", "paired_comparisons",
    "paired_markdown", "recipe", "resolve_combo",
    "results_markdown", "run_ablation", "run_combo", "shared_seeds", "summarise", "write_report",
]  # fmt: skip
