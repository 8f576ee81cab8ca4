"""Pair accuracy of the context benchmark's look-alike classes, from `gsag eval` metrics.json files.

Among the pixels whose true class is one of a pair (car/boat, rider/walker) and that the model
labels as either class of that pair, the share labelled right. A head that ignores the context
cue scores about 0.5 (or the majority class's share); a head that uses it scores near 1.

    python tools/pair_accuracy.py runs/eval/*/metrics.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PAIRS = (("car", "boat"), ("rider", "walker"))


def pair_accuracy(confusion: list[list[int]], classes: list[str], a: str, b: str) -> float:
    """Share right among pixels of class a or b predicted as a or b (confusion[true][pred])."""
    i, j = classes.index(a), classes.index(b)
    right = confusion[i][i] + confusion[j][j]
    total = right + confusion[i][j] + confusion[j][i]
    return right / total if total else float("nan")


def main(paths: list[str]) -> None:
    print("| metrics | " + " | ".join(f"{a}-vs-{b} acc" for a, b in PAIRS) + " |")
    print("| --- |" + " ---: |" * len(PAIRS))
    for path in paths:
        m = json.loads(Path(path).read_text())
        accs = [pair_accuracy(m["confusion"], m["classes"], a, b) for a, b in PAIRS]
        print(f"| {Path(path).parent.name} | " + " | ".join(f"{x:.2f}" for x in accs) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
