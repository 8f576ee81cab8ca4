"""What `gsag bench` measures: one row per model and size, the settings, ratios to the baseline."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

BASELINE = "deeplabv3"
PEER = "tv_deeplabv3_resnet50"  # torchvision's DeepLabV3-ResNet50, an outside reference
PEER_BACKBONE = "resnet50"  # the peer's backbone is always its own ResNet-50 ...
PEER_LABEL = "tv-resnet50"  # ... and its rows say so


def compared_backbone(row: BenchRow) -> str:
    """The backbone a row is compared under: the peer's counts as gsag's resnet50."""
    return PEER_BACKBONE if row.backbone == PEER_LABEL else row.backbone


@dataclass
class BenchRow:
    """One model at one input size."""

    model: str
    backbone: str
    height: int
    width: int
    batch: int
    params_m: float = float("nan")
    gflops: float = float("nan")
    latency_ms: float = float("nan")
    latency_p10_ms: float = float("nan")
    latency_p90_ms: float = float("nan")
    cpu_ms: float = float("nan")
    throughput: float = float("nan")
    peak_mem_mb: float = float("nan")
    train_step_ms: float = float("nan")
    train_step_cpu_ms: float = float("nan")
    sdpa_backend: str = "-"
    compile: str = "none"  # the mode timed for inference (the faster one with `best`)
    train_compile: str = "none"  # the mode timed for the training step
    compile_s: dict = field(default_factory=dict)  # mode -> first call minus a steady one (s)
    warmup_ms: dict = field(default_factory=dict)  # mode -> median wall ms of the warm-up calls
    train_peak_mem_mb: float = float("nan")  # CUDA only
    error: str = ""
    rounds: dict = field(default_factory=dict)  # metric -> per-round medians (ms)
    ratios: dict = field(default_factory=dict)
    # metric -> {"per_round": one ratio per round, "median", "min", "max": over them}
    round_ratios: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BenchSettings:
    """What to measure and how often."""

    device: str = "cpu"
    warmup: int = 2
    repeats: int = 5
    train_repeats: int = 2
    num_classes: int = 21
    memory: bool = True
    train_step: bool = True
    model_kwargs: dict = field(default_factory=dict)
    amp: str = "none"  # none | bf16 | fp16 | auto
    channels_last: bool = False
    compile: str = "none"  # none | head | model
    best: bool = False  # time each model eager and compiled, keep the faster
    rounds: int = 1  # interleaved rounds; `repeats` timed calls per model per round
    compile_backend: str = "inductor"  # "eager" traces without code generation (tests)


_RATIO_FIELDS = (
    "params_m",
    "gflops",
    "latency_ms",
    "cpu_ms",
    "peak_mem_mb",
    "train_step_ms",
    "train_step_cpu_ms",
    "train_peak_mem_mb",
)


def add_ratios(rows: list[BenchRow]) -> None:
    """Fills `row.ratios` with each metric divided by the baseline's at the same backbone/size.

    A time measured in interleaved rounds gets `row.round_ratios[metric]`, its ratio in every
    round with their median, min and max, and its `row.ratios[metric]` is that median: one value
    that the terminal, bench.md and bench.json all print."""
    base = {(r.backbone, r.height, r.width, r.batch): r for r in rows if r.model == BASELINE}
    for row in rows:
        ref = base.get((compared_backbone(row), row.height, row.width, row.batch))
        row.ratios = {}
        if ref is None:
            continue
        for key in _RATIO_FIELDS:
            num, den = getattr(row, key), getattr(ref, key)
            if den == den and num == num and den > 0:  # skip NaN
                row.ratios[key] = num / den
        row.round_ratios = {}
        for key, mine in row.rounds.items():
            theirs = ref.rounds.get(key, [])
            per_round = [a / b for a, b in zip(mine, theirs, strict=False) if b > 0]
            if per_round and len(per_round) == len(mine) == len(theirs):
                median = statistics.median(per_round)
                row.round_ratios[key] = {
                    "per_round": per_round,
                    "median": median,
                    "min": min(per_round),
                    "max": max(per_round),
                }
                row.ratios[key] = median
