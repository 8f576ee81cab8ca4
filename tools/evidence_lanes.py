"""The evidence grids' lanes (docs/results.md): a queue of `gsag ablate` runs drained by two
worker lanes side by side on a 2-core CPU.

    python tools/evidence_lanes.py --grid vector   # from the repository root; logs in runs/lane*.log
    python tools/evidence_lanes.py --grid vector --dry-run   # the queue, nothing run

Each run is one `gsag ablate` call, which skips a finished run and continues an unfinished one
from its `last.pt`: rerunning this script resumes the grid. A failed run is logged and left out.
A lane takes the first queued run that is ready; a head's test runs wait for its sweep, whose
runs `tools/choose_lr.py`'s rule turns into the head's rate (written to the grid's chosen file).

Two grids:

- `vector` ("Does GSAG beat a global vector?", declared in docs/results.md before it ran):
  1. sweep on val: gsag_hybrid, fcn_pool, pspnet, deeplabv3, danet at lr 1e-3, 3e-3 and 1e-2,
     seeds 100 and 101, each seed on its own generated dataset (`runs/ctx_v2_d{seed}`); the
     rule is applied to the mean of the two seeds;
  2. test: the five heads and hybrid's `no_global` (at hybrid's rate), fresh seeds 5-14, each
     on its own generated dataset, in seed order.
  It runs from a clean checkout of the commit that declares it (a `git worktree` of it), so work
  landing meanwhile cannot enter it: the script refuses a dirty tree, every run records its
  commit (`result.json`'s environment.code), and a finished run from another commit, or from a
  dirty tree, stops the lanes and is never restored or recorded. `--record` (run from a newer
  checkout, with `--runs-root` pointing at the grid's worktree) copies finished runs into
  docs/results/vector_v3/ and accepts only the commit named in its `COMMIT` file.
- `v2` (the fair re-run, finished on 2026-12-07; kept so that its records restore and the
  queue can be read): the sweep at 3e-4, 1e-3 and 3e-3 on seed 0, five test seeds of hybrid,
  DeepLabV3, DANet, `no_global`, `global_only`, then basic and incremental at hybrid's rate,
  then the `no_pointwise` follow-up in its own folder.

The committed records are a grid's memory across machines: at start the script copies every
finished run recorded under `docs/results/` (or `--records-root`) into `runs/` where `runs/`
lacks it, so a fresh worktree skips what already ran.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

COMMON = [
    "--config", "configs/demo.yaml", "--backbones", "resnet18",
    "--set", "data.synthetic=false", "--threads", "1", "--device", "cpu",
]  # fmt: skip
RECORD_FILES = ("config.yaml", "metrics.jsonl", "result.json")  # result.json last: it marks done


@dataclass
class Job:
    name: str
    head: str | None  # the head whose chosen rate the run needs; None for sweep runs
    args: list[str]  # `gsag ablate` arguments; a test run's lr is added when it starts
    model: str | None = None  # the model that lr is set for, when it is not `head`


@dataclass
class Grid:
    """One declared grid: its queue, where its sweep and records live, which data it needs."""

    name: str
    rates: tuple[str, ...]  # the sweep's rates, as spelled in its folder names
    sweep_seeds: tuple[int, ...]  # the rule takes the mean over these
    rate_folder: str  # the sweep's `gsag ablate --out` folder of one rate ({lr})
    chosen: tuple[str, str]  # (the chosen rates in runs/, their record)
    data_seeds: tuple[int, ...]  # `runs/ctx_v2_d{seed}` datasets the grid trains on
    queue: Callable[[], list[Job]]
    # (`gsag ablate --out` folder's runs, where they are recorded, which runs)
    records: list[tuple[str, str, str]] = field(default_factory=list)
    # restored but never recorded: (folder's runs, the records they come from, which runs)
    references: list[tuple[str, str, str]] = field(default_factory=list)
    commit_file: str | None = None  # the record of the commit the grid runs from


def _test_args(out: str, seed: int) -> list[str]:
    return [*COMMON, "--out", out, "--seeds", str(seed), "--set",
            "data.root=runs/ctx_v2_d{seed}", "data.val_split=test"]  # fmt: skip


# ---- the fair re-run (v2), finished -------------------------------------------------------
V2_RATES = ("0.0003", "0.001", "0.003")
V2_HEADS = ("gsag_hybrid", "deeplabv3", "danet")
V2_VARIANTS = ("no_global", "global_only")  # of gsag_hybrid, at its rate
V2_GSAG_HEADS = ("gsag_basic", "gsag_incremental")  # at hybrid's rate, after the 25 runs above
FOLLOW_UP = "no_pointwise"  # of gsag_hybrid, at its rate, declared after the grid
V2_SEEDS = (0, 1, 2, 3, 4)


def v2_queue() -> list[Job]:
    sweep = [*COMMON, "--set", "data.root=runs/ctx_v2_d0", "--seeds", "0"]
    jobs = [
        Job(
            f"sweep {head} lr {lr}",
            None,
            [*sweep, "--set", f"optim.lr={lr}", "--out", f"runs/lr_{lr}", "--models", head],
        )
        for head in V2_HEADS
        for lr in (V2_RATES[1], V2_RATES[2], V2_RATES[0])
    ]
    for seed in V2_SEEDS:
        for head in V2_HEADS:
            args = [*_test_args("runs/test_v2", seed), "--models", head]
            jobs.append(Job(f"test {head} seed {seed}", head, args))
        for variant in V2_VARIANTS:
            args = [*_test_args("runs/test_v2", seed), "--models", "gsag_hybrid"]
            jobs.append(
                Job(
                    f"test gsag_hybrid-{variant} seed {seed}",
                    "gsag_hybrid",
                    [*args, "--variants", variant],
                )
            )
    for seed in V2_SEEDS:
        for head in V2_GSAG_HEADS:
            args = [*_test_args("runs/test_v2", seed), "--models", head]
            jobs.append(Job(f"test {head} seed {seed}", "gsag_hybrid", args, model=head))
    for seed in V2_SEEDS:
        args = [*_test_args("runs/test_v2_psa", seed), "--models", "gsag_hybrid"]
        jobs.append(
            Job(
                f"follow-up gsag_hybrid-{FOLLOW_UP} seed {seed}",
                "gsag_hybrid",
                [*args, "--variants", FOLLOW_UP],
            )
        )
    return jobs


V2 = Grid(
    name="v2",
    rates=V2_RATES,
    sweep_seeds=(0,),
    rate_folder="runs/lr_{lr}",
    chosen=("runs/chosen_lr.json", "docs/results/lr_sweep_250/chosen_lr.json"),
    data_seeds=V2_SEEDS,
    queue=v2_queue,
    records=[
        *(
            (f"runs/lr_{lr}/runs", f"docs/results/lr_sweep_250/runs/lr_{lr}", "*")
            for lr in V2_RATES
        ),
        ("runs/test_v2/runs", "docs/results/test_v2/runs", "*"),
        ("runs/test_v2_psa/runs", "docs/results/test_v2_psa/runs", f"gsag_hybrid-{FOLLOW_UP}__*"),
    ],
    references=[("runs/test_v2_psa/runs", "docs/results/test_v2/runs", "gsag_hybrid__*")],
)

# ---- does GSAG beat a global vector? (vector), declared in docs/results.md -----------------
VECTOR_RATES = ("0.001", "0.003", "0.01")
VECTOR_HEADS = ("gsag_hybrid", "fcn_pool", "pspnet", "deeplabv3", "danet")
VECTOR_VARIANT = "no_global"  # of gsag_hybrid, at its rate
VECTOR_SWEEP_SEEDS = (100, 101)
VECTOR_TEST_SEEDS = tuple(range(5, 15))
VECTOR_RECORDS = "docs/results/vector_v3"


def vector_queue() -> list[Job]:
    jobs = []
    for head in VECTOR_HEADS:
        for lr in VECTOR_RATES:
            for seed in VECTOR_SWEEP_SEEDS:
                args = [*COMMON, "--out", f"runs/v3_lr_{lr}", "--seeds", str(seed), "--set",
                        "data.root=runs/ctx_v2_d{seed}", f"optim.lr={lr}", "--models", head]  # fmt: skip
                jobs.append(Job(f"sweep {head} lr {lr} seed {seed}", None, args))
    for seed in VECTOR_TEST_SEEDS:
        for head in VECTOR_HEADS:
            args = [*_test_args("runs/v3_test", seed), "--models", head]
            jobs.append(Job(f"test {head} seed {seed}", head, args))
        args = [*_test_args("runs/v3_test", seed), "--models", "gsag_hybrid"]
        jobs.append(
            Job(
                f"test gsag_hybrid-{VECTOR_VARIANT} seed {seed}",
                "gsag_hybrid",
                [*args, "--variants", VECTOR_VARIANT],
            )
        )
    return jobs


VECTOR = Grid(
    name="vector",
    rates=VECTOR_RATES,
    sweep_seeds=VECTOR_SWEEP_SEEDS,
    rate_folder="runs/v3_lr_{lr}",
    chosen=("runs/v3_chosen_lr.json", f"{VECTOR_RECORDS}/chosen_lr.json"),
    data_seeds=(*VECTOR_SWEEP_SEEDS, *VECTOR_TEST_SEEDS),
    queue=vector_queue,
    records=[
        *((f"runs/v3_lr_{lr}/runs", f"{VECTOR_RECORDS}/sweep/lr_{lr}", "*") for lr in VECTOR_RATES),
        ("runs/v3_test/runs", f"{VECTOR_RECORDS}/test/runs", "*"),
    ],
    commit_file=f"{VECTOR_RECORDS}/COMMIT",
)
GRIDS = {g.name: g for g in (V2, VECTOR)}


# ---- records ------------------------------------------------------------------------------
def run_code(run: Path) -> dict | None:
    """The code version a finished run recorded (`environment.code`), None before records had it."""
    result = json.loads((run / "result.json").read_text())
    return (result.get("environment") or {}).get("code")


def from_commit(run: Path, commit: str | None) -> bool:
    """Whether a finished run comes from `commit` on a clean tree (any run when commit is None)."""
    if commit is None:
        return True
    code = run_code(run) or {}
    return code.get("commit") == commit and code.get("dirty") is False


def copy_finished(
    source: Path, dest: Path, pattern: str = "*", commit: str | None = None
) -> list[str]:
    """Copy each finished run folder under `source` whose name matches `pattern` (one with a
    result.json) that `dest` does not hold finished, file by file (RECORD_FILES, result.json
    last); with `commit`, only runs from that commit on a clean tree. The names copied."""
    copied = []
    for result in sorted(source.glob(f"{pattern}/result.json")):
        run = result.parent
        if (dest / run.name / "result.json").is_file() or not from_commit(run, commit):
            continue
        (dest / run.name).mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (run / name).is_file():
                shutil.copyfile(run / name, dest / run.name / name)
        copied.append(run.name)
    return copied


def foreign_runs(grid: Grid, root: Path, commit: str | None) -> list[Path]:
    """Finished runs in the grid's folders under `root` that do not come from `commit`."""
    if commit is None:
        return []
    found = []
    for out, _, pattern in grid.records:
        for result in sorted((root / out).glob(f"{pattern}/result.json")):
            if not from_commit(result.parent, commit):
                found.append(result.parent)
    return found


def restore(
    root: Path = Path("."), grid: Grid = V2, records: Path | None = None, commit: str | None = None
) -> int:
    """Bring the committed finished runs (under `records`, default `root`) into `root`'s runs/;
    with `commit`, only those from it. How many were copied."""
    records = records or root
    pairs = [*grid.records, *grid.references]
    return sum(
        len(copy_finished(records / rec, root / out, pat, commit)) for out, rec, pat in pairs
    )


def record(
    root: Path = Path("."), grid: Grid = V2, runs_root: Path | None = None
) -> tuple[int, list[Path]]:
    """Copy the finished runs of `runs_root`'s runs/ (default `root`) and the chosen rates into
    `root`'s records. A grid with a commit file takes only runs from that commit on a clean
    tree: (how many were copied, the runs refused)."""
    runs_root = runs_root or root
    commit = None
    if grid.commit_file:
        path = root / grid.commit_file
        if not path.is_file():
            raise SystemExit(
                f"error: {path} is missing; write the hash of the commit that declares the "
                f"{grid.name} grid into it first"
            )
        commit = path.read_text().strip()
    n = sum(
        len(copy_finished(runs_root / out, root / rec, pat, commit))
        for out, rec, pat in grid.records
    )
    chosen, kept = runs_root / grid.chosen[0], root / grid.chosen[1]
    if chosen.is_file():
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chosen, kept)
    return n, foreign_runs(grid, runs_root, commit)


# ---- the lanes ----------------------------------------------------------------------------
def _choose_lr():
    path = Path(__file__).with_name("choose_lr.py")
    spec = importlib.util.spec_from_file_location("choose_lr", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Lanes:
    def __init__(
        self, python: str, dry_run: bool, grid: Grid = V2, commit: str | None = None
    ) -> None:
        self.python, self.dry_run, self.grid, self.commit = python, dry_run, grid, commit
        self.jobs = grid.queue()
        self.chosen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stopped: str | None = None  # why the lanes stopped early
        self.tool = _choose_lr()

    def rate(self, head: str) -> float | None:
        """The head's chosen lr once its sweep is finished, else None."""
        if head not in self.chosen:
            folders = [Path(self.grid.rate_folder.format(lr=lr)) for lr in self.grid.rates]
            try:
                scores = self.tool.read_scores(folders, head, self.grid.sweep_seeds)
            except self.tool.SweepUnfinished:  # two runs of one rate stop the lanes instead
                return None
            self.chosen[head] = self.tool.choose(scores)
            record = {h: {"lr": lr} for h, lr in self.chosen.items()}
            Path(self.grid.chosen[0]).write_text(json.dumps(record, indent=1) + "\n")
            print(f"{head}: {scores} -> lr {self.chosen[head]:g}", flush=True)
        return self.chosen[head]

    def take(self) -> tuple[Job, list[str]] | bool | None:
        """The next ready job and its arguments; False when none is ready yet; None when the
        queue is empty or the lanes were stopped."""
        with self.lock:
            if not self.jobs or self.stopped:
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

    def check_records(self) -> None:
        """Stop the lanes when a finished run does not come from the grid's commit."""
        foreign = foreign_runs(self.grid, Path("."), self.commit)
        if foreign:
            with self.lock:
                self.stopped = f"{foreign[0]} does not come from {self.commit} on a clean tree"
            print(f"stopping: {self.stopped}", flush=True)

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
            self.check_records()


def clean_commit(root: Path = Path(".")) -> str:
    """The commit of the clean checkout at `root`; exits with one line when the tree is dirty or
    not a checkout (a grid with a commit runs only from a clean worktree of it)."""
    from gsag.bench.environment import code_version

    code = code_version(root)
    if code["commit"] is None or code["dirty"] is not False:
        raise SystemExit(
            "error: this grid runs only from a clean checkout of the commit that declares it "
            f"(here: commit {code['commit']}, dirty {code['dirty']}). Fix: "
            "git worktree add ../grid <that commit>, and run this script there"
        )
    return str(code["commit"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="vector", help="which grid")
    parser.add_argument("--python", default=sys.executable, help="the python that runs gsag")
    parser.add_argument("--dry-run", action="store_true", help="print the runs, run nothing")
    parser.add_argument(
        "--record", action="store_true", help="copy the finished runs into docs/results and stop"
    )
    parser.add_argument(
        "--runs-root", type=Path, default=Path("."), help="with --record: the checkout that ran"
    )
    parser.add_argument(
        "--records-root",
        type=Path,
        default=Path("."),
        help="the checkout whose docs/results/ hold the finished runs to restore",
    )
    args = parser.parse_args(argv)
    grid = GRIDS[args.grid]
    if args.record:
        n, refused = record(Path("."), grid, args.runs_root)
        print(f"recorded {n} finished runs under docs/results/", flush=True)
        for run in refused:
            print(f"refused (another commit or a dirty tree): {run}", flush=True)
        return 1 if refused else 0
    commit = clean_commit() if grid.commit_file and not args.dry_run else None
    Path("runs").mkdir(exist_ok=True)
    if not args.dry_run:
        n = restore(Path("."), grid, args.records_root, commit)
        print(f"restored {n} finished runs from {args.records_root}/docs/results/", flush=True)
        for k in grid.data_seeds:
            root = Path(f"runs/ctx_v2_d{k}")
            if not (root / "classes.yaml").exists():
                synth = ["-m", "gsag", "data", "synth", "--seed", str(k), "--out", str(root)]
                subprocess.check_call([args.python, *synth, "--quiet"])
    lanes = Lanes(args.python, args.dry_run, grid, commit)
    if not args.dry_run:
        lanes.check_records()
    threads = [threading.Thread(target=lanes.lane, args=(n,)) for n in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if lanes.stopped:
        print(f"error: {lanes.stopped}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
