"""Pair accuracy of the context benchmark's look-alike classes, from `gsag eval` metrics.json files.

Among the pixels whose true class is one of a pair (car/boat, rider/walker) and that the model
labels as either class of that pair, the share labelled right. A head that ignores the context
cue scores about 0.5 (or the majority class's share); a head that uses it scores near 1.

    python tools/pair_accuracy.py runs/eval/*/metrics.json
    python tools/pair_accuracy.py runs/eval/*/metrics.json --plot pair_accuracy.png

With `--plot`, folders named `<label>_s<seed>` (as docs/results.md's commands write them) are
grouped by label: one row per label, one dot per seed, one panel per pair.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from gsag.ablate import CUE_PAIR, pair_accuracy

PAIRS = (CUE_PAIR, ("rider", "walker"))
__all__ = ["PAIRS", "main", "pair_accuracy", "plot", "read"]


def read(paths: list[str]) -> dict[str, list[float]]:
    """Folder name -> one accuracy per pair."""
    out = {}
    for path in paths:
        m = json.loads(Path(path).read_text())
        out[Path(path).parent.name] = [
            pair_accuracy(m["confusion"], m["classes"], a, b) for a, b in PAIRS
        ]
    return out


def plot(accs: dict[str, list[float]], path: str) -> None:
    """One panel per pair: a row per label (folder name without `_s<seed>`), a dot per seed."""
    from gsag.trained.draw import pyplot, save_figure

    groups: dict[str, list[list[float]]] = {}
    for name, values in accs.items():
        groups.setdefault(re.sub(r"_s\d+$", "", name), []).append(values)
    labels = list(groups)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(PAIRS), figsize=(10, 0.4 * len(labels) + 1.5), sharey=True)
    for k, ((a, b), ax) in enumerate(zip(PAIRS, axes, strict=True)):
        for y, label in enumerate(labels):
            xs = [v[k] for v in groups[label]]
            ax.plot(xs, [y] * len(xs), "o", color="#4c72b0", alpha=0.7, ms=5)
        ax.axvline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlim(0.3, 1.02)
        ax.set_title(f"{a} vs {b}: pair accuracy (0.5 = the cue unused)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[0].invert_yaxis()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="+", help="metrics.json files written by gsag eval")
    parser.add_argument("--plot", help="also draw the accuracies into this PNG")
    args = parser.parse_args(argv)
    accs = read(args.metrics)
    print("| metrics | " + " | ".join(f"{a}-vs-{b} acc" for a, b in PAIRS) + " |")
    print("| --- |" + " ---: |" * len(PAIRS))
    for name, values in accs.items():
        print(f"| {name} | " + " | ".join(f"{x:.2f}" for x in values) + " |")
    if args.plot:
        plot(accs, args.plot)


if __name__ == "__main__":
    main()
