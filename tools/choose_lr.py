"""Each head's learning rate from the evidence grid's sweep, by the rule docs/results.md declares.

The rule: a head takes the rate with its highest val mIoU (the mean over the sweep's seeds when
it has several); among the rates within 0.5 points of that best, the one nearest 1e-3 in steps
of the sweep's grid (3e-4 and 3e-3 are both one step from 1e-3; a tie between two equally near
rates goes to the higher mIoU). The sweep's runs are `gsag ablate` folders, one per rate:

    python tools/choose_lr.py runs/lr_0.0003 runs/lr_0.001 runs/lr_0.003 \
        --models gsag_hybrid deeplabv3 danet
    python tools/choose_lr.py runs/v3_lr_0.001 runs/v3_lr_0.003 runs/v3_lr_0.01 \
        --models gsag_hybrid fcn_pool --seeds 100 101

prints `gsag_hybrid@optim.lr=... deeplabv3@optim.lr=... danet@optim.lr=...` (the `--set`
values for the test runs) and writes the scores and choices to `--json` when given. A rate's
folder is read from its runs' config.yaml, never from the folder's name.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

MARGIN = 0.5  # mIoU points
PREFERRED = 1e-3


class SweepUnfinished(LookupError):
    """A rate's folder has no finished run of the model yet."""


def choose(scores: dict[float, float], margin: float = MARGIN) -> float:
    """The rate by the rule, from {lr: mIoU in %}."""
    if not scores:
        raise ValueError("no scores to choose from")
    rates = sorted(scores)
    home = min(range(len(rates)), key=lambda i: abs(math.log10(rates[i] / PREFERRED)))
    best = max(scores.values())
    near = [i for i, lr in enumerate(rates) if scores[lr] >= best - margin]
    return rates[min(near, key=lambda i: (abs(i - home), -scores[rates[i]]))]


def read_scores(folders: list[Path], model: str, seeds: Sequence[int] = (0,)) -> dict[float, float]:
    """{lr: mIoU in %} of `model`'s finished base runs in each `gsag ablate` folder: the mean over
    `seeds`, each of which must have exactly one finished run there."""
    scores: dict[float, float] = {}
    for folder in folders:
        rates, values = set(), []
        for seed in seeds:
            found = []
            for result in sorted((folder / "runs").glob(f"{model}__*__s{seed}__*/result.json")):
                config = yaml.safe_load((result.parent / "config.yaml").read_text())
                miou = 100 * json.loads(result.read_text())["mIoU"]
                found.append((float(config["optim"]["lr"]), miou))
            if len(found) != 1:
                error = SweepUnfinished if not found else ValueError
                raise error(
                    f"{folder}/runs holds {len(found)} finished seed-{seed} runs of {model}; "
                    "need exactly one (finish the sweep, or move the extra folder away)"
                )
            rates.add(found[0][0])
            values.append(found[0][1])
        if len(rates) != 1:
            raise ValueError(f"{folder}/runs holds runs of {model} at several rates: {rates}")
        lr = rates.pop()
        if lr in scores:
            raise ValueError(f"lr {lr} of {model} appears in two folders")
        scores[lr] = sum(values) / len(values)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="one `gsag ablate --out` per rate")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="the sweep's seeds (their mean counts)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write scores and choices here")
    args = parser.parse_args(argv)
    chosen = {}
    for model in args.models:
        try:
            scores = read_scores(args.folders, model, args.seeds)
        except (SweepUnfinished, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
        lr = choose(scores)
        chosen[model] = {"mIoU": {str(k): round(v, 2) for k, v in sorted(scores.items())}, "lr": lr}
        table = ", ".join(f"{k:g}: {v:.2f}" for k, v in sorted(scores.items()))
        print(f"{model}: {table} -> lr {lr:g}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(chosen, indent=1) + "\n")
    print(" ".join(f"{m}@optim.lr={c['lr']:g}" for m, c in chosen.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
