"""Does the OpenMP wait policy take effect? CPU seconds of 2 torch threads running 300 small
parallel ops with 2 ms pauses between (workers that spin burn CPU during the pauses)."""
import os, sys, time
when = sys.argv[1]  # "before": set OMP_WAIT_POLICY before importing torch; "after": after import
policy = sys.argv[2] if len(sys.argv) > 2 else ""
if when == "before" and policy:
    os.environ["OMP_WAIT_POLICY"] = policy
import torch
if when == "after" and policy:
    os.environ["OMP_WAIT_POLICY"] = policy
torch.set_num_threads(2)
x = torch.randn(2_000_000)
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(300):
    y = x * 1.0001 + 1.0
    time.sleep(0.002)
print(f"{when:6s} {policy or 'unset':8s} wall {time.perf_counter() - t0:.2f} s  cpu {time.process_time() - c0:.2f} s")
