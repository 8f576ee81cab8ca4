"""The evidence grid's lanes (docs/results.md, "The fair re-run"): a queue of
`gsag ablate` runs drained by two worker lanes side by side on a 2-core CPU.

    python tools/evidence_lanes.py            # from the repository root; logs in runs/lane*.log

1. Learning-rate sweep: hybrid, DeepLabV3 and DANet at 3e-4, 1e-3 and 3e-3, seed 0, scored on
   val, data generated with seed 0 (`runs/ctx_v2_d0`).
2. As soon as a head's three sweep runs are finished, `tools/choose_lr.py`'s rule fixes its rate
   (written to `runs/chosen_lr.json`), and that head's test runs become ready.
3. Five seeds on the test split, each on its own generated dataset (`runs/ctx_v2_d{seed}`), in
   seed order: hybrid, DeepLabV3, DANet, hybrid's `no_global` and `global_only` (hybrid's rate).
4. Declared on 2026-12-07, after those 25: GSAG basic and incremental, five seeds on the test
   split at hybrid's rate (not swept), so that the claims about them have a test-split result.
5. A follow-up declared after the grid: hybrid's `no_pointwise`, five seeds on the test split at
   hybrid's rate, in a folder of its own (`runs/test_v2_psa`) beside copies of hybrid's five
   test runs, which its report compares it with.

A lane takes the first queued run that is ready, so neither waits for the other's sweep. Each
run is one `gsag ablate` call, which skips a finished run and continues an unfinished one from
its `last.pt`: rerunning this script resumes the grid. A failed run is logged and left out.

The committed records are the grid's memory across machines: at start the script copies every
finished run recorded under `docs/results/` (RECORDS, and the follow-up's REFERENCES) into
`runs/` where `runs/` lacks it, so a fresh clone skips what already ran; `--record` copies the
finished runs of `runs/` the other way (their config.yaml, metrics.jsonl and result.json, and
`chosen_lr.json`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RATES = ("0.0003", "0.001", "0.003")
HEADS = ("gsag_hybrid", "deeplabv3", "danet")
VARIANTS = ("no_global", "global_only")  # of gsag_hybrid, at its rate
GSAG_HEADS = ("gsag_basic", "gsag_incremental")  # at hybrid's rate, after the 25 runs above
FOLLOW_UP = "no_pointwise"  # of gsag_hybrid, at its rate, declared after the grid
SEEDS = (0, 1, 2, 3, 4)
COMMON = [
    "--config", "configs/demo.yaml", "--backbones", "resnet18",
    "--set", "data.synthetic=false", "--threads", "1", "--device", "cpu",
]  # fmt: skip
# (`gsag ablate --out` folder's runs, where they are recorded in the repository, which runs)
RECORDS = [
    *((f"runs/lr_{lr}/runs", f"docs/results/lr_sweep_250/runs/lr_{lr}", "*") for lr in RATES),
    ("runs/test_v2/runs", "docs/results/test_v2/runs", "*"),
    ("runs/test_v2_psa/runs", "docs/results/test_v2_psa/runs", f"gsag_hybrid-{FOLLOW_UP}__*"),
]
# restored but never recorded: the follow-up's reference, hybrid's test runs, beside its own
REFERENCES = [("runs/test_v2_psa/runs", "docs/results/test_v2/runs", "gsag_hybrid__*")]
RECORD_FILES = ("config.yaml", "metrics.jsonl", "result.json")  # result.json last: it marks done
CHOSEN = ("runs/chosen_lr.json", "docs/results/lr_sweep_250/chosen_lr.json")


def copy_finished(source: Path, dest: Path, pattern: str = "*") -> list[str]:
    """Copy each finished run folder under `source` whose name matches `pattern` (one with a
    result.json) that `dest` does not hold finished, file by file (RECORD_FILES, result.json
    last); the names copied."""
    copied = []
    for result in sorted(source.glob(f"{pattern}/result.json")):
        run = result.parent
        if (dest / run.name / "result.json").is_file():
            continue
        (dest / run.name).mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (run / name).is_file():
                shutil.copyfile(run / name, dest / run.name / name)
        copied.append(run.name)
    return copied


def restore(root: Path = Path(".")) -> int:
    """Bring the committed finished runs into `runs/`; how many were copied."""
    pairs = [*RECORDS, *REFERENCES]
    return sum(len(copy_finished(root / rec, root / out, pat)) for out, rec, pat in pairs)


def record(root: Path = Path(".")) -> int:
    """Copy the finished runs of `runs/` (and the chosen rates) into the records; how many."""
    n = sum(len(copy_finished(root / out, root / rec, pat)) for out, rec, pat in RECORDS)
    chosen, kept = (root / p for p in CHOSEN)
    if chosen.is_file():
        shutil.copyfile(chosen, kept)
    return n


def _choose_lr():
    path = Path(__file__).with_name("choose_lr.py")
    spec = importlib.util.spec_from_file_location("choose_lr", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Job:
    name: str
    head: str | None  # the head whose chosen rate the run needs; None for sweep runs
    args: list[str]  # `gsag ablate` arguments; a test run's lr is added when it starts
    model: str | None = None  # the model that lr is set for, when it is not `head`


def queue() -> list[Job]:
    sweep = [*COMMON, "--set", "data.root=runs/ctx_v2_d0", "--seeds", "0"]
    jobs = [
        Job(
            f"sweep {head} lr {lr}",
            None,
            [*sweep, "--set", f"optim.lr={lr}", "--out", f"runs/lr_{lr}", "--models", head],
        )
        for head in HEADS
        for lr in (RATES[1], RATES[2], RATES[0])
    ]

    def test(seed: int, out: str = "runs/test_v2") -> list[str]:
        return [*COMMON, "--out", out, "--seeds", str(seed), "--set",
                "data.root=runs/ctx_v2_d{seed}", "data.val_split=test"]  # fmt: skip

    for seed in SEEDS:
        for head in HEADS:
            jobs.append(Job(f"test {head} seed {seed}", head, [*test(seed), "--models", head]))
        for variant in VARIANTS:
            jobs.append(
                Job(
                    f"test gsag_hybrid-{variant} seed {seed}",
                    "gsag_hybrid",
                    [*test(seed), "--models", "gsag_hybrid", "--variants", variant],
                )
            )
    for seed in SEEDS:
        for head in GSAG_HEADS:
            args = [*test(seed), "--models", head]
            jobs.append(Job(f"test {head} seed {seed}", "gsag_hybrid", args, model=head))
    for seed in SEEDS:
        args = [*test(seed, "runs/test_v2_psa"), "--models", "gsag_hybrid", "--variants", FOLLOW_UP]
        jobs.append(Job(f"follow-up gsag_hybrid-{FOLLOW_UP} seed {seed}", "gsag_hybrid", args))
    return jobs


class Lanes:
    def __init__(self, python: str, dry_run: bool) -> None:
        self.python, self.dry_run = python, dry_run
        self.jobs = queue()
        self.chosen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.tool = _choose_lr()

    def rate(self, head: str) -> float | None:
        """The head's chosen lr once its sweep is finished, else None."""
        if head not in self.chosen:
            folders = [Path(f"runs/lr_{lr}") for lr in RATES]
            try:
                scores = self.tool.read_scores(folders, head)
            except self.tool.SweepUnfinished:  # two runs of one rate stop the lanes instead
                return None
            self.chosen[head] = self.tool.choose(scores)
            record = {h: {"lr": lr} for h, lr in self.chosen.items()}
            Path("runs/chosen_lr.json").write_text(json.dumps(record, indent=1) + "\n")
            print(f"{head}: {scores} -> lr {self.chosen[head]:g}", flush=True)
        return self.chosen[head]

    def take(self) -> tuple[Job, list[str]] | bool | None:
        """The next ready job and its arguments; False when none is ready yet; None when the
        queue is empty."""
        with self.lock:
            if not self.jobs:
                return None
            for job in self.jobs:
                args = list(job.args)
                if job.head is not None:
                    lr = self.rate(job.head)
                    if lr is None:
                        continue
                    args += ["--set", f"{job.model or job.head}@optim.lr={lr:g}"]
                self.jobs.remove(job)
                return job, args
            return False

    def lane(self, name: str) -> None:
        log = Path(f"runs/lane{name}.log")
        while (taken := self.take()) is not None:
            if taken is False:
                if self.dry_run:  # nothing runs, so the sweep never finishes
                    print(f"lane {name}: the rest waits for the sweep", flush=True)
                    return
                time.sleep(30)
                continue
            job, args = taken
            command = [self.python, "-m", "gsag", "ablate", *args]
            print(f"lane {name}: {job.name}", flush=True)
            if self.dry_run:
                print("  " + " ".join(command), flush=True)
                continue
            with log.open("a") as out:
                out.write(f"### {time.strftime('%H:%M:%S')} {job.name}\n")
                out.flush()
                rc = subprocess.call(["nice", "-n", "19", *command], stdout=out, stderr=out)
            if rc:
                print(f"lane {name}: {job.name} failed (exit {rc}); see {log}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the python that runs gsag")
    parser.add_argument("--dry-run", action="store_true", help="print the runs, run nothing")
    parser.add_argument(
        "--record", action="store_true", help="copy the finished runs into docs/results and stop"
    )
    args = parser.parse_args(argv)
    if args.record:
        print(f"recorded {record()} finished runs under docs/results/", flush=True)
        return 0
    Path("runs").mkdir(exist_ok=True)
    if not args.dry_run:
        print(f"restored {restore()} finished runs from docs/results/", flush=True)
    for k in SEEDS:
        root = Path(f"runs/ctx_v2_d{k}")
        if not (root / "classes.yaml").exists() and not args.dry_run:
            synth = ["-m", "gsag", "data", "synth", "--seed", str(k), "--out", str(root)]
            subprocess.check_call([args.python, *synth, "--quiet"])
    lanes = Lanes(args.python, args.dry_run)
    threads = [threading.Thread(target=lanes.lane, args=(n,)) for n in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
