"""How many torch CPU threads a run uses, and how they wait (docs/training.md, "Training on a
busy machine").

Beside other jobs, two torch threads crawled (13-22 s per demo iteration against 3-6 s): every
parallel region ends at a barrier, and OpenMP's threads spin while they wait there, burning the
cores the other jobs and their own siblings need. Two settings, chosen when a command starts:

- **Waiting threads sleep**: `sleep_when_waiting` sets `OMP_WAIT_POLICY=PASSIVE` unless the
  environment sets a wait policy. torch's OpenMP runtime reads it once, when torch is imported,
  so `gsag` sets it before anything imports torch; setting it later has no effect.
- **The thread count** the user did not set is the cores free when the run starts (the cores
  this process may run on less the 1-minute load average, rounded), but at least two where the
  process has two: with sleeping waiters, a second thread beside busy cores added 10-20 % to
  the time per iteration when the load came from other login sessions and cut it by 34-40 %
  when the load ran in this one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

#: Environment variables that set how OpenMP threads wait; one set by the user is kept.
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: The fewest threads an automatic choice gives a process that may run on that many cores.
MIN_AUTO_THREADS = 2


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and why it was chosen, as the first line of a training run says it."""

    threads: int
    reason: str

    def line(self) -> str:
        """E.g. "using 2 torch threads: 0.1 cores free of 2 (load 1.93), 2 at least"."""
        noun = "thread" if self.threads == 1 else "threads"
        return f"using {self.threads} torch {noun}: {self.reason}"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def choose_threads(
    requested: int,
    cores: int,
    load: float | None,
    env: Mapping[str, str] | None = None,
    source: str = "--threads",
) -> ThreadChoice:
    """The thread count of a run, from what is known at its start.

    Args:
        requested: the count the user set (`--threads`, `train.num_threads`); 0 = not set.
        cores: the cores this process may run on (`available_cores`).
        load: the 1-minute load average (`load_average`); None where unknown.
        env: the environment: an `OMP_NUM_THREADS` there counts as set by the user, and a wait
            policy there is named in the reason.
        source: how the user set `requested`, for the reason.
    """
    env = env or {}
    policy = env.get("OMP_WAIT_POLICY", "")
    waits = f"; OMP_WAIT_POLICY={policy}" if policy else ""
    if requested > 0:
        return ThreadChoice(requested, f"set by {source}{waits}")
    given = env.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return ThreadChoice(int(given), f"set by OMP_NUM_THREADS in the environment{waits}")
    if load is None:
        return ThreadChoice(cores, f"all {cores} cores, the load is unknown here{waits}")
    free = max(cores - load, 0.0)
    floor = min(MIN_AUTO_THREADS, cores)
    threads = min(max(int(free + 0.5), floor), cores)
    least = f", {floor} at least" if threads == floor and int(free + 0.5) < floor else ""
    return ThreadChoice(
        threads, f"{free:.1f} cores free of {cores} (load {load:.2f}){least}{waits}"
    )


def thread_choice(requested: int, source: str = "--threads") -> ThreadChoice:
    """`choose_threads` with this machine's cores, load and environment."""
    return choose_threads(requested, available_cores(), load_average(), os.environ, source)


def sleep_when_waiting(env: MutableMapping[str, str] | None = None) -> bool:
    """Make OpenMP threads that wait for work sleep instead of spinning (`OMP_WAIT_POLICY=
    PASSIVE`) unless `env` (default: the process environment) sets a wait policy already.

    Only before torch is imported: returns False, changing nothing, once it is. Returns whether
    it set the policy.
    """
    env = os.environ if env is None else env
    if "torch" in sys.modules or any(key in env for key in WAIT_SETTINGS):
        return False
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
