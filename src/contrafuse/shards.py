"""Fusing across processes and machines with torchrun: each process takes its share of the pairs.

``torchrun --nproc_per_node N -m contrafuse fuse --ir DIR --vis DIR --out DIR`` starts N copies
of the command; torchrun tells each its place (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``). The
pairs, sorted by name, are dealt out by rank (pair i goes to rank i mod N), so every pair is
fused exactly once whatever the files on disk; each process writes its outputs atomically as a
single process does; the reports are gathered so that every process returns the whole run's
report and rank 0 prints it. Each process takes GPU ``LOCAL_RANK`` when there are several.
Without torchrun (``WORLD_SIZE`` unset or 1) nothing here does anything.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True)
class Shard:
    """This process's place among the processes of one run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that reports for the run (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def take(self, items: list[Item]) -> list[Item]:
        """This process's share of ``items`` (every ``world``-th, from ``rank``)."""
        return items[self.rank::self.world]

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every process, in rank order (``[value]`` in a single process)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        _join_group()
        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        """Wait until every process got here."""
        if self.distributed:
            import torch.distributed as dist

            _join_group()
            dist.barrier()


def current_shard() -> Shard:
    """The shard torchrun's environment describes (a single process without torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    return Shard(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def _join_group() -> None:
    """Join torchrun's process group once (gloo: reports are Python objects, on any device)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
        atexit.register(dist.destroy_process_group)
