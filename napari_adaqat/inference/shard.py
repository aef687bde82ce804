"""Split ``adaqat segment`` over the processes of a ``torchrun`` launch.

Rank ``r`` of ``N`` segments inputs ``r, r + N, r + 2N, ...`` of the sorted file list on its own device
(``cuda:LOCAL_RANK`` on CUDA, else the CPU).  The processes only coordinate (a few barriers and small
messages), so the process group is gloo on every device; one machine or many (``--nnodes`` with a
rendezvous), as ``adaqat train`` runs.  Without torchrun (``WORLD_SIZE`` unset) it is one process.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shard:
    """This process's place in the run: ``rank`` of ``world``."""

    rank: int = 0
    world: int = 1

    @property
    def lead(self) -> bool:
        """Rank 0: holds the output folder, merges the journals, prints the summary."""
        return self.rank == 0

    def mine(self, index: int) -> bool:
        """Whether input ``index`` of the sorted list is this rank's."""
        return index % self.world == self.rank

    def count(self, n: int) -> int:
        """How many of ``n`` sorted inputs are this rank's."""
        return len(range(self.rank, n, self.world))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def from_lead(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (e.g. its refusal to start)."""
        if self.world <= 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def total(self, counts: dict[str, int]) -> dict[str, int]:
        """``counts`` summed over the ranks (on every rank)."""
        if self.world <= 1:
            return dict(counts)
        import torch.distributed as dist

        every: list = [None] * self.world
        dist.all_gather_object(every, counts)
        return {key: sum(c.get(key, 0) for c in every) for key in counts}


def start_shard(device: str, timeout_hours: float = 72.0) -> tuple[Shard, str]:
    """(this process's :class:`Shard`, its device): joins the torchrun process group when launched
    by torchrun.  ``timeout_hours`` bounds how long rank 0 waits for the slowest rank at the end."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard(), device
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=datetime.timedelta(hours=timeout_hours))
    if device.startswith("cuda") and ":" not in device:  # a GPU each (ranks share them when there are fewer)
        local = int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count())
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return Shard(dist.get_rank(), dist.get_world_size()), device


def stop_shard(shard: Shard) -> None:
    """Leave the process group; the run's work is done and written, so a peer that already left is no error."""
    if shard.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - shutting down after the results are on disk
                pass
