"""Multi-process training with torch.distributed, as launched by `torchrun --nproc_per_node=N -m training train`.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them everything here is a no-op for a single process.
NCCL on CUDA, gloo on CPU. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_kind: str) -> DistInfo:
    """Join the process group when launched by torchrun; pin each process to its own GPU."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))
    if device_kind == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return info


def teardown(info: DistInfo, wait_for_others: bool = True) -> None:
    """Leave the process group; with `wait_for_others`, only once every process has got here, so none exits
    while another still talks to it (rank 0 saves the final checkpoint while the others are done)."""
    if info.enabled and dist.is_initialized():
        if wait_for_others:
            dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(info: DistInfo, values: list[float], device) -> list[float]:
    """Sum a few floats over all processes (e.g. loss sums and token counts of a sharded validation)."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def most_urgent_code(info: DistInfo, code: int, device) -> int:
    """The largest of the processes' codes (go on < out of time < interrupted), so they all act on it together,
    whichever of them was interrupted or ran out of time."""
    if not info.enabled:
        return code
    tensor = torch.tensor([code], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def from_main(info: DistInfo, value: Any) -> Any:
    """Rank 0's `value` (picklable) on every process, so they all act on one decision (e.g. a measured one)."""
    if not info.enabled:
        return value
    box = [value if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(info: DistInfo, value: Any) -> list[Any] | None:
    """Every process's `value` (picklable), in rank order, on rank 0; None on the others."""
    if not info.enabled:
        return [value]
    gathered: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered
