"""Processes of a training run: one alone (CPU or one GPU), or one per device under ``torchrun``
(DistributedDataParallel over gloo on CPU or nccl on GPU), and their seeds."""
from __future__ import annotations

import atexit
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..devices import DeviceError, resolve_device
from .checkpoint import capture_rng_state
from .config import ConfigError


@dataclass
class Process:
    """Where this process runs and its place in a distributed run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_process(device_preference: str) -> Process:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        device = resolve_device(device_preference, local_rank=local_rank)
    except DeviceError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size <= 1:
        return Process(device)
    if not dist.is_initialized():
        # Kept for the life of the process: re-creating it under torchrun's env:// store hangs,
        # and a script may call train() more than once.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_process_group)
    return Process(device, dist.get_rank(), dist.get_world_size(), True)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def place_models(models: dict[str, nn.Module], device: torch.device, channels_last: bool) -> dict[str, nn.Module]:
    for module in models.values():
        module.to(device)
        if channels_last:
            module.to(memory_format=torch.channels_last)
    return models


def wrap_distributed(models: dict[str, nn.Module], process: Process) -> dict[str, nn.Module]:
    """DDP around every module that has trainable parameters (DDP broadcasts rank 0's weights)."""
    if not process.distributed:
        return dict(models)
    device_ids = [process.device.index] if process.device.type == "cuda" else None
    return {
        name: nn.parallel.DistributedDataParallel(m, device_ids=device_ids)
        if any(p.requires_grad for p in m.parameters()) else m
        for name, m in models.items()
    }


def gather_rng_states(process: Process) -> list[dict[str, Any]]:
    state = capture_rng_state()
    if not process.distributed:
        return [state]
    states: list[Any] = [None] * process.world_size
    dist.all_gather_object(states, state)
    return states
