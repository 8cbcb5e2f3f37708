"""The Recipe interface: everything that differs between methods; the engine does the rest.

The engine (:mod:`contrafuse.training.engine`) owns the loop, seeding, device placement,
DistributedDataParallel wrapping, the sampler, checkpoints/resume, progress bar, TensorBoard
and the final export. A recipe owns the networks, optimisers, schedulers, dataset, the body of
one optimisation step (forward, losses, its own backward/step order) and the inference export.

Call order, per process::

    cfg      = recipe.config_class (from YAML + overrides)
    recipe.configure(cfg)                                      # default: self.cfg = cfg
    models   = recipe.build_models(cfg)                       # dict name -> nn.Module (CPU, fp32)
    (engine moves models to the device; wraps every module with trainable parameters in DDP)
    opts, schedulers = recipe.build_optimizers(unwrapped models, cfg)   # built once, kept across stages
    dataset  = recipe.build_dataset(cfg, cfg.data.split)
    for step in range(start, total):                          # global step, 0-based
        stage = the Stage holding `step` (recipe.stages(cfg), consecutive)
        if step == first step of stage: recipe.start_stage(stage, models, opts, schedulers, cfg)
        losses = recipe.training_step(models, opts, batch, step, stage)   # batch on device
        for s in schedulers.values(): s.step()                # every step: schedules are in steps
    module, name = recipe.export_model(unwrapped models, cfg)   # -> <out>/<name>.safetensors

Fine-tuning (``--init WEIGHTS``) calls ``recipe.init_weights(models, WEIGHTS, cfg)`` once, on a
fresh run, between ``build_models`` and ``build_optimizers``; validation (``validation.every``)
fuses with ``export_model``'s module, so a recipe needs nothing more for it.

Rules a recipe follows so that resume and DDP stay exact:

* All randomness of a step comes from the batch (the data pipeline seeds every sample from
  the run seed and the sample's position) or from torch's global RNG, which the engine seeds
  per process and checkpoints. Keep no other hidden state; anything that must survive a resume
  goes in the optimisers/schedulers or in :meth:`Recipe.state_dict`.
* Call a DDP-wrapped module through its ``forward`` (``models[name](...)``) for every pass that
  needs gradients; use :func:`unwrap` for gradient-free passes or to reach submodules.
* Optimiser param groups are fixed after :meth:`build_optimizers`; a stage may change values in
  place (e.g. learning rates) in :meth:`start_stage`, which then land in the checkpoint. The
  same optimiser objects (and their Adam moments) carry over from one stage to the next.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import Dataset

from ..data import DatasetError, PairFiles, choose_pairs, custom_pairs, dataset_pairs
from ..errors import ContrafuseError
from ..models import create_model, default_weights_path, list_models, model_info
from ..registry import Registry
from .config import ConfigError, DataConfig, TrainConfig

Losses = Mapping[str, "float | Tensor"]
Models = dict[str, nn.Module]  # by the names build_models gives them
Optimizers = dict[str, Optimizer]
Batch = dict[str, Any]  # a collated training item, on the device


@dataclass(frozen=True)
class Stage:
    """A contiguous block of ``steps`` optimisation steps sharing one objective."""

    name: str
    steps: int


class Recipe:
    """Base class of a method's training recipe. Subclass, fill in, decorate with :func:`register_recipe`."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[TrainConfig]] = TrainConfig
    # Config keys that set the stages' lengths: they may change when a run is extended, as long
    # as every step already taken stays in the same stage.
    length_keys: ClassVar[tuple[str, ...]] = ()

    cfg: TrainConfig

    def configure(self, cfg: TrainConfig) -> None:
        """Called once with the run's config before anything is built; default keeps it as ``self.cfg``
        (so :meth:`training_step` can read it). Validate the config here."""
        self.cfg = cfg

    def stages(self, cfg: TrainConfig) -> list[Stage]:
        """Consecutive stages whose steps sum to the run length. Default: one stage of ``train.steps``."""
        return [Stage("main", cfg.train.steps)]

    def build_models(self, cfg: TrainConfig) -> dict[str, nn.Module]:
        """Freshly initialised networks (seeded by the engine before this call), on CPU."""
        raise NotImplementedError

    def build_optimizers(
        self, models: dict[str, nn.Module], cfg: TrainConfig
    ) -> tuple[dict[str, Optimizer], dict[str, LRScheduler]]:
        """Optimisers and per-step schedulers for the (unwrapped, on-device) ``models``."""
        raise NotImplementedError

    def build_dataset(self, cfg: TrainConfig, split: str) -> Dataset:
        """A map-style dataset of training items.

        ``dataset[key]`` must accept the engine's sample keys ``(pair_index, sample_seed)``
        and return a dict of tensors (plus optional strings) that the default collate can
        batch. ``len(dataset)`` is the number of distinct pairs. :class:`contrafuse.data.PatchPairs`
        implements this; its ``transform`` hook adds method-specific views.
        """
        raise NotImplementedError

    def start_stage(
        self,
        stage: Stage,
        models: dict[str, nn.Module],
        optimizers: dict[str, Optimizer],
        schedulers: dict[str, LRScheduler],
        cfg: TrainConfig,
    ) -> None:
        """Hook run right before the first step of each stage (also after a resume that lands there)."""

    def training_step(self, models: Models, optimizers: Optimizers, batch: Batch, step: int, stage: Stage) -> Losses:
        """One optimisation step: forward, losses, backward and optimiser steps in the method's order.

        ``models`` may be DDP-wrapped; ``batch`` is on the training device. Returns the scalar
        losses to log, as floats or detached 0-d tensors (the engine reads them only when it
        logs, so no device sync is forced every step).
        """
        raise NotImplementedError

    def export_model(self, models: dict[str, nn.Module], cfg: TrainConfig) -> tuple[nn.Module, str]:
        """The registered inference module filled with the trained weights, and its registry name."""
        raise NotImplementedError

    def init_weights(self, models: dict[str, nn.Module], weights: str, cfg: TrainConfig) -> Path:
        """Fill ``models`` (fresh, on CPU) from inference weights (``--init``): ``"default"`` for the
        shipped ones, or a file our loader reads (``.safetensors``, an author's ``.pth``).

        Returns the file loaded. The default: this method cannot be fine-tuned.
        """
        raise ConfigError(f"train.init: the {self.name!r} recipe cannot start from weights")

    def state_dict(self) -> dict[str, Any]:
        """Extra recipe state to checkpoint (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class UnknownRecipeError(ContrafuseError):
    """A training method that is not registered."""


def builtin_recipe_modules() -> tuple[str, ...]:
    """``training/<method>.py`` of each built-in method that has one: the modules of the models'
    catalogue entries (``models/<method>.py``) name the methods, so a built-in method is declared
    in one place."""
    modules = dict.fromkeys(model_info(name, load=False).module for name in list_models())
    methods = (module.rpartition(".")[2] for module in modules if module)
    return tuple(f"{__package__}.{m}" for m in methods if importlib.util.find_spec(f"{__package__}.{m}") is not None)


RECIPES: Registry[type[Recipe]] = Registry("training method", UnknownRecipeError, builtins=builtin_recipe_modules())


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: make ``cls`` available as ``contrafuse train <cls.name>``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a recipe needs a non-empty `name`")
    existing = RECIPES.get(cls.name) if cls.name in RECIPES else None
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"recipe {cls.name!r} is registered twice ({existing.__qualname__}, {cls.__qualname__})")
    RECIPES.add(cls.name, cls, replace=True)
    return cls


def list_recipes() -> list[str]:
    """Names of the registered training recipes, sorted."""
    return sorted(RECIPES.names())


def get_recipe(name: str) -> Recipe:
    """A fresh instance of the recipe registered as ``name``."""
    return RECIPES.get(name)()


def models_trained_by(recipe: str) -> list[str]:
    """The registered models whose capabilities name ``recipe`` as their training recipe."""
    return [name for name in list_models() if model_info(name).capabilities.recipe == recipe]


def configured_pairs(data: DataConfig, split: str) -> list[PairFiles]:
    """The file pairs ``data`` names: a named dataset's split, or (``dataset: folders``) two folders."""
    if data.dataset == "folders":
        if not data.ir_dir or not data.vis_dir:
            raise ConfigError("data.dataset: folders needs data.ir_dir and data.vis_dir")
        return custom_pairs(data.ir_dir, data.vis_dir, data.manifest)
    return dataset_pairs(data.dataset, split, data.root)


def training_pairs(cfg: TrainConfig, split: str) -> list[PairFiles]:
    """The pairs a recipe trains on: :func:`configured_pairs` less the ``validation.holdout`` last ones."""
    pairs = configured_pairs(cfg.data, split)
    holdout = cfg.validation.holdout
    if holdout and holdout >= len(pairs):
        raise ConfigError(f"validation.holdout = {holdout} leaves no training pairs (the data has {len(pairs)})")
    return pairs[: len(pairs) - holdout] if holdout else pairs


def validation_pairs(cfg: TrainConfig) -> list[PairFiles]:
    """The held-out pairs validated on (see :class:`~.config.ValidationConfig`), never training pairs."""
    v = cfg.validation
    if v.datasets:
        pairs = [pair for spec in v.datasets for pair in named_validation_pairs(spec, cfg.data.root)]
    elif v.ir_dir or v.vis_dir:
        if not (v.ir_dir and v.vis_dir):
            raise ConfigError("validation.ir_dir and validation.vis_dir go together")
        pairs = custom_pairs(v.ir_dir, v.vis_dir, v.manifest)
    elif v.split:
        if cfg.data.dataset == "folders":
            raise ConfigError("validation.split needs a named data.dataset; with folders use validation.ir_dir and "
                              "validation.vis_dir, or validation.holdout")
        pairs = dataset_pairs(cfg.data.dataset, v.split, cfg.data.root)
    elif v.holdout:
        pairs = configured_pairs(cfg.data, cfg.data.split)[-v.holdout :]
    else:
        raise ConfigError("validation.every is set, but there is nothing to validate on: set validation.split, "
                          "validation.ir_dir and validation.vis_dir, or validation.holdout")
    by_name = {p.name: p for p in pairs}
    pairs = [by_name[n] for n in choose_pairs(list(by_name), v.pairs or len(pairs))]
    check_held_out(pairs, training_pairs(cfg, cfg.data.split))
    return pairs


def named_validation_pairs(spec: str, root: str | None) -> list[PairFiles]:
    """The pairs of ``name:split`` (``name`` alone: its ``test`` split), named ``name/pair``."""
    name, _, split = spec.partition(":")
    try:
        pairs = dataset_pairs(name, split or "test", root)
    except DatasetError as exc:
        raise ConfigError(f"validation.datasets: {spec}: {exc}") from None
    return [PairFiles(f"{name}/{p.name}", p.ir, p.vis) for p in pairs]


def check_held_out(validation: list[PairFiles], training: list[PairFiles]) -> None:
    """A :class:`ConfigError` when a validation pair's files are also trained on."""
    key = lambda p: (os.path.realpath(p.ir), os.path.realpath(p.vis))  # noqa: E731
    trained = {key(p) for p in training}
    shared = [p.name for p in validation if key(p) in trained]
    if shared:
        raise ConfigError(f"validation pairs {', '.join(shared[:5])}{' ...' if len(shared) > 5 else ''} are also training "
                          "pairs; validate on a held-out split (validation.split, validation.holdout)")


def registered_weights(model_name: str, weights: str, **options: Any) -> tuple[nn.Module, Path]:
    """The registered model ``model_name`` with ``weights`` (``"default"`` or a file) loaded, and
    the file; a missing or unfitting file is a :class:`~contrafuse.errors.WeightsError` naming it."""
    path = default_weights_path(model_name) if weights == "default" else Path(weights)
    if path is None:
        raise ConfigError(f"train.init default: no weights are shipped for {model_name!r}; give a file")
    return create_model(model_name, weights=path, **options), path


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel (or similar ``.module``) wrapper."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


__all__ = [
    "Batch",
    "Losses",
    "Models",
    "Optimizers",
    "Recipe",
    "Stage",
    "check_held_out",
    "configured_pairs",
    "get_recipe",
    "list_recipes",
    "register_recipe",
    "registered_weights",
    "training_pairs",
    "unwrap",
    "validation_pairs",
]
