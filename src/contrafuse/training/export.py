"""The trained inference weights: the recipe's model as ``<model>.safetensors`` with the run's metadata."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..devices import describe_device
from ..models.weights import save_weights
from .config import TrainConfig, config_to_json
from .distributed import Process
from .recipe import Recipe, unwrap


def export_weights(
    out_dir: Path, recipe: Recipe, cfg: TrainConfig, models: dict[str, nn.Module], dataset: Any,
    steps: int, elapsed: float, process: Process, init: dict[str, str] | None = None,
    validation: dict[str, Any] | None = None,
) -> Path:
    """The recipe's inference model as ``out_dir/<model>.safetensors`` with the run's metadata
    (``validation``: the validation that chose these weights, for ``best/``)."""
    module, model_name = recipe.export_model({k: unwrap(m) for k, m in models.items()}, cfg)
    names = list(getattr(dataset, "names", []))
    metadata = {
        "model": model_name,
        "method": cfg.method,
        "config": config_to_json(cfg),
        "steps": str(steps),
        "data": json.dumps({"dataset": cfg.data.dataset, "split": cfg.data.split, "pairs": len(dataset), "names": names}),
        "git_commit": git_commit(),
        "wall_time_s": f"{elapsed:.1f}",
        "device": describe_device(process.device),
        "world_size": str(process.world_size),
        "torch": torch.__version__,
    }
    if init:
        metadata["init"] = json.dumps(init)
    if validation:
        metadata["validation"] = json.dumps(validation)
    return save_weights(module, out_dir / f"{model_name}.safetensors", metadata, overwrite=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str:
    """The checkout's commit (``+dirty`` when it has changes), or "" outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""
