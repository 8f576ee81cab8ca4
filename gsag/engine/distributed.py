"""Process-group helpers for `torchrun` (DDP) and the single-process case.

`torchrun --nproc_per_node N -m gsag train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; `setup()`
reads them, picks NCCL on CUDA and gloo on CPU, and binds each process to its GPU.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
GLOO_TEARDOWN_PAUSE_S = 0.2


@dataclass
class DistInfo:
    """Where this process sits: `rank` of `world_size`, on `device`."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # noqa: RUF009  (an immutable default)
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> DistInfo:
    """Join the process group described by the environment (if any) and choose the device.

    Args:
        device: "cpu", "cuda" or "cuda:N" to force one; by default CUDA when available.
    """
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        # "cuda:N" picks the GPU of a single process; under torchrun each rank takes LOCAL_RANK
        index = int(device.split(":")[1]) if device and ":" in device and world_size == 1 else None
        index = local_rank if index is None else index
        torch.cuda.set_device(index)
        dev = torch.device("cuda", index)
    else:
        dev = torch.device("cpu")
    initialized_here = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        initialized_here = True
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank, world_size, local_rank, dev, initialized_here)


def cleanup(info: DistInfo) -> None:
    """Leave the process group if `setup` created it."""
    if info.initialized_here and dist.is_initialized():
        if dist.get_backend() == "gloo":
            # A gloo worker thread may still be freeing the last collective's tensors, which
            # takes the GIL; destroying the group joins that thread while holding the GIL. At
            # torch 2.4.1 that deadlocked about 1 teardown in 5 (gdb: both threads waiting on
            # each other). Sleeping releases the GIL so the workers can finish first.
            time.sleep(GLOO_TEARDOWN_PAUSE_S)
        dist.destroy_process_group()


def several_processes() -> bool:
    """True inside a process group of two or more processes."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for all processes (no-op when not distributed)."""
    if several_processes():
        dist.barrier()


def all_true(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on every process."""
    if not several_processes():
        return flag
    t = torch.tensor([0 if flag else 1], device=device)
    dist.all_reduce(t)
    return int(t.item()) == 0


def from_rank0(value: T) -> T:
    """Rank 0's `value` (any picklable object) on every process; unchanged when not distributed.

    Lets a check that only rank 0 makes fail on every rank with rank 0's own message: under
    `torchrun` the first rank to exit has the others killed, perhaps before they print.
    """
    if not several_processes():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor across processes (returns it unchanged when not distributed)."""
    if not several_processes():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process.

    DDP keeps parameters equal, but each process updates its running statistics from its own
    batch; evaluation must use rank 0's, which are the ones checkpoints hold.
    """
    if not several_processes():
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)
