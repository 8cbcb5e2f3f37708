"""Model registry and factory, in the style of timm's ``create_model``/``list_models``.

Every registered model is an ``nn.Module`` whose ``forward(ir, vis)`` takes two luma tensors
``(B, 1, H, W)`` in ``[0, 1]`` and returns the fused luma ``(B, 1, H, W)`` on the same scale
(not clamped). The first argument is the "intensity" source (infrared; CT/PET/SPECT for
medical pairs), the second the "detail" source (visible; MRI).
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import WeightsError


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of a model."""

    name: str
    description: str
    builder: Callable[[], nn.Module]
    default_weights: str | None = None  # file name in contrafuse/weights, shipped with the package
    needs_weights: bool = True
    task: str = "ivif"  # "ivif", "medical" or "any"


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    description: str,
    default_weights: str | None = None,
    needs_weights: bool = True,
    task: str = "ivif",
) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator registering a zero-argument builder under ``name``."""

    def decorate(builder: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(name, description, builder, default_weights, needs_weights, task)
        return builder

    return decorate


def _ensure_builtin_models() -> None:
    from . import classical, coconet, cs2fusion  # noqa: F401  (registration side effect)


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered models, sorted; ``pattern`` is a shell wildcard."""
    _ensure_builtin_models()
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model."""
    _ensure_builtin_models()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def default_weights_path(name: str) -> Path | None:
    """Path of the weights shipped for ``name``, or None when none are shipped."""
    info = model_info(name)
    if info.default_weights is None:
        return None
    path = Path(str(resources.files("contrafuse") / "weights" / info.default_weights))
    return path if path.exists() else None


def create_model(
    name: str,
    weights: str | os.PathLike | None = "default",
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build a registered model in eval mode.

    Args:
        name: a name from :func:`list_models`.
        weights: ``"default"`` for the weights shipped with the package, a path to a
            ``.safetensors`` file or to an author's whole-module pickle, or ``None`` for random
            initialisation.
        device: torch device.
    """
    info = model_info(name)
    model = info.builder()
    if weights == "default":
        weights = default_weights_path(name)
        if weights is None and info.needs_weights:
            raise WeightsError(
                f"model {name!r} has no shipped weights in this installation; pass weights=PATH (--weights)"
            )
    if weights is not None and info.needs_weights:
        from .weights import load_weights

        load_weights(model, weights, model_name=name)
    return model.to(device).eval()
