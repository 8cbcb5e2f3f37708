"""Training checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds every model, optimiser and scheduler state, the recipe's extra state, the
RNG states of every process (python, numpy, torch, cuda), the sample-stream position, the step,
the config and the accumulated wall time. RNG states are stored as tensors and plain Python
values so that the safe loader can read them.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_with
from ..errors import ContrafuseError

CHECKPOINT_NAME = "checkpoint.pt"
# What every checkpoint of ours holds, with the type each entry must have.
REQUIRED_ENTRIES = {"method": str, "step": int, "config": dict, "models": dict, "optimizers": dict, "schedulers": dict,
                    "rng": list, "sampler": dict, "world_size": int}


class CheckpointError(ContrafuseError):
    """A checkpoint is missing, unreadable or from a different run."""


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch and cuda RNG states, as safe-to-load values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save`` through :mod:`contrafuse.atomic`: a kill never leaves half a file."""
    return write_with(path, lambda temp: torch.save(payload, temp), overwrite=True)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable training checkpoint ({str(exc).splitlines()[0][:200]})") from None
    check_checkpoint(payload, path)
    return payload


def check_checkpoint(payload: Any, path: Path) -> None:
    """A :class:`CheckpointError` unless ``payload`` has the entries a contrafuse checkpoint has."""
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a contrafuse training checkpoint (holds a {type(payload).__name__})")
    missing = [k for k in REQUIRED_ENTRIES if k not in payload]
    wrong = [k for k, kind in REQUIRED_ENTRIES.items() if k in payload and not isinstance(payload[k], kind)]
    if missing or wrong:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"malformed {', '.join(wrong)}"] if wrong else [])
        raise CheckpointError(f"{path}: not a contrafuse training checkpoint ({'; '.join(problems)})")
    if payload["step"] < 0 or "global_batch" not in payload["sampler"]:
        raise CheckpointError(f"{path}: not a contrafuse training checkpoint (malformed step or sampler)")
