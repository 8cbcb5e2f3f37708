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

The built-in models are *declared* in :mod:`contrafuse.models.catalog` (name, task, description,
weights file, and the module that registers the builder), so that listing and describing them
imports no network code and no torch; their modules register only the builder and capabilities.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ContrafuseError, WeightsError
from ..registry import Registry
from .capabilities import Capabilities

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

StateFilter = Callable[["dict[str, Tensor]"], "dict[str, Tensor]"]


class UnknownModelError(ContrafuseError, KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of a model."""

    name: str
    description: str
    builder: Callable[..., nn.Module] | None  # None: declared, its module not imported yet
    default_weights: str | None = None  # file name in contrafuse/weights, shipped with the package
    needs_weights: bool = True
    task: str = "ivif"  # "ivif", "medical" or "any"
    # maps the state dict of a foreign weights file (an author's pickle) onto this model's keys
    foreign_state_filter: StateFilter | None = None
    capabilities: Capabilities = Capabilities()
    module: str | None = None  # the module whose import registers the builder (declared entries)

    def options(self) -> list[str]:
        """The keyword options the builder accepts."""
        return [p.name for p in inspect.signature(self.builder).parameters.values() if p.kind is p.KEYWORD_ONLY]


MODELS: Registry[ModelInfo] = Registry("model", UnknownModelError, builtins=(f"{__package__}.catalog",))


def declare_model(name: str, *, module: str, description: str, default_weights: str | None = None,
                  needs_weights: bool = True, task: str = "ivif") -> None:
    """Declare a model whose builder ``module`` registers on first use (see the module doc)."""
    MODELS.add(name, ModelInfo(name, description, None, default_weights, needs_weights, task, module=module))


def register_model(
    name: str,
    *,
    description: str | None = None,
    default_weights: str | None = None,
    needs_weights: bool = True,
    task: str = "ivif",
    foreign_state_filter: StateFilter | None = None,
    capabilities: Capabilities = Capabilities(),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder (keyword-only options) under ``name``, with what it can do.

    A model declared with :func:`declare_model` keeps its declared description, weights and task;
    any other needs ``description``.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        declared = _declared_entry(name)
        if declared is not None:
            MODELS.add(name, dataclasses.replace(declared, builder=builder, foreign_state_filter=foreign_state_filter,
                                                 capabilities=capabilities), replace=True)
            return builder
        if description is None:
            raise ValueError(f"model {name!r} needs a description")
        MODELS.add(name, ModelInfo(name, description, builder, default_weights, needs_weights, task, foreign_state_filter,
                                   capabilities))
        return builder

    return decorate


def _declared_entry(name: str) -> ModelInfo | None:
    """The entry of ``name`` while it is declared and its builder not yet registered."""
    if name not in MODELS:
        return None
    info = MODELS.get(name)
    return info if info.builder is None else None


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered models, sorted; ``pattern`` is a shell wildcard."""
    return sorted(MODELS.names(pattern))


def model_info(name: str, *, load: bool = True) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model.

    ``load=False`` returns a declared entry as declared (name, description, task, weights; no
    builder or capabilities) without importing its module: what listing a model needs.
    """
    info = MODELS.get(name)
    if load and info.builder is None:
        importlib.import_module(info.module)
        info = MODELS.get(name)
        if info.builder is None:
            raise ContrafuseError(f"model {name!r}: {info.module} declares it but registers no builder")
    return info


def capabilities_of(network: nn.Module) -> Capabilities:
    """The capabilities of a module built by :func:`create_model` (defaults for any other module)."""
    info = getattr(network, "model_info", None)
    return info.capabilities if isinstance(info, ModelInfo) else Capabilities()


def default_weights_path(name: str) -> Path | None:
    """Path of the weights shipped for ``name``, or None when none are shipped."""
    info = model_info(name, load=False)
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
    from ..devices import resolve_device

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
