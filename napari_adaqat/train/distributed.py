"""torchrun support: NCCL on GPU, gloo on CPU; only rank 0 writes files."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: str) -> tuple[int, int]:
    """Start the process group when launched by torchrun; returns (rank, world_size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def local_device(device: str) -> str:
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce gradients so every rank steps alike.

    Done by hand instead of DDP because the box prompt leaves some prompt-encoder
    parameters unused, which DDP handles only with a slower unused-parameter scan.
    Parameters without a gradient are skipped (as AdamW skips them on one process).
    """
    if world <= 1:
        return
    for p in params:
        if p.grad is None:  # the graph is the same on every rank, so all ranks skip it alike
            continue
        dist.all_reduce(p.grad)
        p.grad /= world


def all_mean(value: float, count: int, world: int, device: str) -> float:
    """Mean of per-rank means weighted by their counts."""
    if world <= 1:
        return value
    t = torch.tensor([value * count, float(count)], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / t[1].clamp(min=1))


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def shutdown(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
