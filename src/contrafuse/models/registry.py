"""Model registry and factory, in the style of timm's ``create_model``/``list_models``.

The contract every registered model keeps (the one protocol the fusing pipeline knows):

* It is an ``nn.Module`` whose ``forward(*, ir, vis)`` takes two luma tensors
  ``(B, 1, H, W)`` in ``[0, 1]``, keyword-only, and returns the fused luma ``(B, 1, H, W)`` on
  the same scale (not clamped). ``ir`` is the "intensity" source (infrared; CT/PET/SPECT for
  medical pairs), ``vis`` the "detail" source (visible; MRI).
* It may also define ``fuse(*, ir, vis)``: the same result (up to float rounding) computed
  faster or in bounded memory, for inference only. The pipeline calls ``fuse`` when present.

A builder is registered with :func:`register_model`; it takes keyword options only (passed
through :func:`create_model`) and returns a freshly initialised module. The entry also carries
what the model can do (:class:`~contrafuse.models.capabilities.Capabilities`: value scale, size
multiple, ONNX core, thread invariance, int8 recipe, training recipe); :func:`create_model` puts
the entry on the module it builds (``module.model_info``), as timm puts ``pretrained_cfg`` on its
models, so that the runtime and export can read it.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..devices import resolve_device
from ..errors import ContrafuseError, WeightsError
from ..registry import Registry
from .capabilities import Capabilities

StateFilter = Callable[[dict[str, Tensor]], dict[str, Tensor]]


class UnknownModelError(ContrafuseError, KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of a model."""

    name: str
    description: str
    builder: Callable[..., nn.Module]
    default_weights: str | None = None  # file name in contrafuse/weights, shipped with the package
    needs_weights: bool = True
    task: str = "ivif"  # "ivif", "medical" or "any"
    # maps the state dict of a foreign weights file (an author's pickle) onto this model's keys
    foreign_state_filter: StateFilter | None = None
    capabilities: Capabilities = Capabilities()

    def options(self) -> list[str]:
        """The keyword options the builder accepts."""
        return [p.name for p in inspect.signature(self.builder).parameters.values() if p.kind is p.KEYWORD_ONLY]


MODELS: Registry[ModelInfo] = Registry("model", UnknownModelError, builtins=tuple(
    f"{__package__}.{module}" for module in ("classical", "coconet", "cs2fusion")))


def register_model(
    name: str,
    *,
    description: str,
    default_weights: str | None = None,
    needs_weights: bool = True,
    task: str = "ivif",
    foreign_state_filter: StateFilter | None = None,
    capabilities: Capabilities = Capabilities(),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder (keyword-only options) under ``name``, with what it can do."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.add(name, ModelInfo(name, description, builder, default_weights, needs_weights, task, foreign_state_filter,
                                   capabilities))
        return builder

    return decorate


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered models, sorted; ``pattern`` is a shell wildcard."""
    return sorted(MODELS.names(pattern))


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model."""
    return MODELS.get(name)


def capabilities_of(network: nn.Module) -> Capabilities:
    """The capabilities of a module built by :func:`create_model` (defaults for any other module)."""
    info = getattr(network, "model_info", None)
    return info.capabilities if isinstance(info, ModelInfo) else Capabilities()


def default_weights_path(name: str) -> Path | None:
    """Path of the weights shipped for ``name``, or None when none are shipped."""
    info = model_info(name)
    if info.default_weights is None:
        return None
    path = Path(str(resources.files("contrafuse") / "weights" / info.default_weights))
    return path if path.exists() else None


def build_model(name: str, **options: Any) -> nn.Module:
    """A freshly initialised (random-weight) model, built with the builder's keyword options."""
    info = model_info(name)
    unknown = sorted(set(options) - set(info.options()))
    if unknown:
        accepted = ", ".join(info.options()) or "none"
        raise ContrafuseError(f"model {name!r} has no option(s) {', '.join(unknown)}; options: {accepted}")
    model = info.builder(**options)
    model.model_info = info  # what it can do travels with it (see the module doc)
    return model


def create_model(
    name: str,
    weights: str | os.PathLike | None = "default",
    device: str | torch.device = "cpu",
    **options: Any,
) -> nn.Module:
    """Build a registered model in eval mode.

    Args:
        name: a name from :func:`list_models`.
        weights: ``"default"`` for the weights shipped with the package, a path to a
            ``.safetensors`` file or to an author's whole-module pickle, or ``None`` for random
            initialisation.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``, ...
        options: keyword options of the model's builder (e.g. ``vgg_seed`` for CoCoNet).
    """
    info = model_info(name)
    model = build_model(name, **options)
    if weights == "default":
        weights = default_weights_path(name)
        if weights is None and info.needs_weights:
            raise WeightsError(
                f"model {name!r} has no shipped weights in this installation; pass weights=PATH (--weights)"
            )
    if weights is not None and info.needs_weights:
        from .weights import load_weights

        load_weights(model, weights, model_name=name, foreign_state_filter=info.foreign_state_filter)
    return model.to(resolve_device(device)).eval()
