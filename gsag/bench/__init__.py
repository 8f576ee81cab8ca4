"""Side-by-side benchmark of segmentation models: params, GFLOPs, latency, memory, training step.

Every run includes a DeepLabV3 baseline row per backbone and input size, and reports ratios to
it. Measurement choices (also in docs/bench.md):

- Inference: `aux=False`, eval mode, `torch.inference_mode`, random weights (speed does not
  depend on the values). Latency is the median over `repeats` timed forwards after `warmup`
  untimed ones; the spread is the 10th-90th percentile range. On CUDA, CUDA events time the
  forward on the GPU.
- GFLOPs: `gsag.flops.count_gflops` (torch's FLOP counter plus analytic attention FLOPs,
  because the counter reports 0 for the fused CPU attention kernel). 1 multiply-add = 2 FLOPs.
- Peak memory: on CUDA, `torch.cuda.max_memory_allocated` over one forward minus the memory
  held before it. On CPU, a fresh subprocess per model (glibc's `MALLOC_MMAP_THRESHOLD_=65536`,
  so large tensors are returned to the system when freed) builds the model and input, runs one
  64x64 forward (one-time library set-up), resets the kernel's resident-set high-water mark
  (`/proc/self/clear_refs`), runs one forward and reports the high-water mark minus the
  resident set before it: the extra RAM one inference needs, allocator overheads included.
- SDPA backend: the attention kernels that actually ran, read from a profiler trace of one
  forward (e.g. `flash_attention_for_cpu`, `flash`, `efficient`, `cudnn`, `math`).
- Training step: aux head on, cross-entropy on random labels, SGD; batch at least 2 (batch
  norm needs it); one warm-up step, then `train_repeats` timed steps per round.
- Settings: amp, channels_last and compile mode apply to every model alike; `best` times each
  model eager and compiled and keeps the faster mode.
- Interleaved rounds: per backbone and size, round r times every model (`repeats` calls) in
  an order rotated by r; ratios to DeepLabV3 are also given per round, as median and min-max.
"""

from __future__ import annotations

from gsag.bench.environment import environment, load_average, sdpa_backends
from gsag.bench.memory import (
    MIB,
    _cpu_peak_worker,
    cpu_peak_memory_mb,
    cuda_peak_memory_during,
    cuda_peak_memory_mb,
    peak_rss_during,
)
from gsag.bench.models import build_model, default_models, valid_models
from gsag.bench.report import compact_table, settings_line, to_markdown, write_results
from gsag.bench.rows import BASELINE, PEER, PEER_LABEL, BenchRow, BenchSettings, add_ratios
from gsag.bench.run import bench_group, run_bench
from gsag.bench.timing import (
    Timings,
    _percentile,
    interleaved,
    time_inference,
    time_train_step,
    train_step_fn,
)
from gsag.engine.compile import apply_compile

__all__ = [
    "BASELINE", "MIB", "PEER", "PEER_LABEL", "BenchRow", "BenchSettings", "Timings", "_cpu_peak_worker",
    "_percentile", "add_ratios", "apply_compile", "bench_group", "build_model", "compact_table",
    "cpu_peak_memory_mb", "cuda_peak_memory_during", "cuda_peak_memory_mb", "default_models",
    "environment", "interleaved", "load_average", "peak_rss_during", "run_bench", "sdpa_backends",
    "settings_line", "time_inference", "time_train_step", "to_markdown", "train_step_fn",
    "valid_models", "write_results",
]  # fmt: skip
