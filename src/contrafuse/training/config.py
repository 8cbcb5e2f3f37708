"""Typed training configuration: nested dataclasses, loaded from YAML, overridden by ``key.path=value``.

Every method's config is a subclass of :class:`TrainConfig`; it keeps the shared ``data`` and
``train`` sections and adds its own (``optim``, ``loss``, ...). Unknown keys are errors, so a
typo in a YAML file or a ``--set`` override never passes silently.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..errors import ContrafuseError

T = TypeVar("T")

# the nine metrics of the field's comparison tables (README), what a validation score ranks by default
PAPER_METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")


class ConfigError(ContrafuseError):
    """A configuration file or override does not fit the config dataclass."""


@dataclass
class DataConfig:
    """Where the training pairs come from and how patches are cut.

    ``dataset`` is a named dataset (see :func:`contrafuse.data.list_datasets`) resolved under
    ``root`` (None: ``$CONTRAFUSE_DATA``, else ``../shared/data`` beside the checkout, else
    ``./shared/data``), or ``folders`` with explicit ``ir_dir``/``vis_dir``.
    """

    dataset: str = "roadscene"
    split: str = "train"
    root: str | None = None
    ir_dir: str | None = None  # only for dataset: folders
    vis_dir: str | None = None
    manifest: str | None = None  # only for dataset: folders; a file of names to keep
    patch_size: int = 128
    flips: bool = True
    workers: int = 2  # DataLoader worker processes per training process (0: load in the main process)


@dataclass
class LoopConfig:
    """The engine's loop: length, batch, seeding, device, checkpoints and logging."""

    steps: int = 1000  # total optimisation steps over all stages
    batch_size: int = 16  # per process; the global batch is batch_size x world size
    seed: int = 123
    device: str = "auto"  # auto, cpu, cuda, cuda:N (under torchrun: cuda uses LOCAL_RANK)
    checkpoint_every: int = 500  # steps; a checkpoint is always written at the end
    log_every: int = 10  # steps between progress-bar/TensorBoard updates
    tensorboard: bool = False  # needs the `tensorboard` extra
    channels_last: bool = False
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    init: str | None = None  # weights to start from: "default" (the shipped ones) or a file (--init)
    schedule_steps: int | None = None  # steps the lr schedule is planned for (None: steps); set when a run is extended


@dataclass
class ValidationConfig:
    """Validation during training: metrics and a grid of fused samples every ``every`` steps.

    The pairs come from ``datasets`` (named datasets as ``name:split``, e.g. ``llvip:test``;
    their pairs are named ``name/pair``), from ``split`` (another split of ``data.dataset``), from
    two folders (``ir_dir``, ``vis_dir``, optional ``manifest``), or from the training pairs
    themselves: ``holdout`` takes the last N of them (sorted by name) out of training.

    Every validation has a score (lower is better; :mod:`contrafuse.training.validation`): with a
    ``panel`` of registered models (shipped weights, fused and scored once per run), the mean
    rank of the current weights among them over ``score_metrics``; without one, minus the mean
    relative gain over ``score_metrics`` since the run's first validation. ``keep_best`` exports
    the best-scoring weights to ``best/`` beside the last ones.
    """

    every: int = 0  # steps between validations (0: off); also at the start of a fresh run and at the end
    datasets: list[str] = field(default_factory=list)  # named datasets "name:split"
    split: str | None = None
    ir_dir: str | None = None
    vis_dir: str | None = None
    manifest: str | None = None
    holdout: int = 0
    pairs: int = 0  # validate on at most this many pairs, spread over the names (0: all)
    samples: int = 3  # pairs shown in the sample grid
    metrics: list[str] = field(default_factory=lambda: ["default"])
    convention: str = "cddfuse"
    at_start: bool = True  # validate the starting weights too (the baseline of a fine-tuning run)
    panel: list[str] = field(default_factory=list)  # registered models to rank against: "name" (shipped weights) or "name=FILE"
    score_metrics: list[str] = field(default_factory=lambda: list(PAPER_METRICS))
    keep_best: bool = True  # export the best-scoring weights to best/ beside the last ones


@dataclass
class TrainConfig:
    """Base of every method's config; ``method`` selects the recipe."""

    method: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


def planned_steps(cfg: TrainConfig) -> int:
    """Steps the learning-rate schedule spans: ``train.schedule_steps``, else ``train.steps``.

    An extended run keeps its original schedule in absolute steps; the added steps run at the
    schedule's final rate.
    """
    return cfg.train.schedule_steps if cfg.train.schedule_steps is not None else cfg.train.steps


def require(condition: bool, key: str, rule: str, value: Any) -> None:
    """A :class:`ConfigError` naming the setting ``key`` when ``condition`` is false."""
    if not condition:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def finite(value: float) -> bool:
    """True for a real number that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def check_loop(cfg: TrainConfig) -> None:
    """Range checks of the shared sections, before anything is built or written."""
    t, d, v = cfg.train, cfg.data, cfg.validation
    require(t.steps >= 0, "train.steps", ">= 0", t.steps)
    require(t.batch_size >= 1, "train.batch_size", ">= 1", t.batch_size)
    require(t.checkpoint_every >= 1, "train.checkpoint_every", ">= 1", t.checkpoint_every)
    require(t.log_every >= 1, "train.log_every", ">= 1", t.log_every)
    require(t.schedule_steps is None or t.schedule_steps >= 1, "train.schedule_steps", ">= 1 (or null)", t.schedule_steps)
    require(t.init is None or bool(str(t.init).strip()), "train.init", "a weights file or 'default'", t.init)
    require(d.patch_size >= 1, "data.patch_size", ">= 1", d.patch_size)
    require(d.workers >= 0, "data.workers", ">= 0", d.workers)
    for key in ("every", "holdout", "pairs", "samples"):
        require(getattr(v, key) >= 0, f"validation.{key}", ">= 0", getattr(v, key))
    from .. import metrics

    require(v.convention in metrics.CONVENTIONS, "validation.convention", f"one of {', '.join(metrics.CONVENTIONS)}", v.convention)
    for key in ("metrics", "score_metrics"):
        try:
            metrics.resolve_names(getattr(v, key))
        except ValueError as exc:
            raise ConfigError(f"validation.{key}: {exc}") from None
    if v.panel:
        from ..models import list_models

        unknown = [m for m in v.panel if m.partition("=")[0] not in list_models()]
        require(not unknown, "validation.panel", f"registered models ({', '.join(list_models())})", v.panel)


def check_rate(value: float, key: str) -> None:
    """A learning rate (or similar factor): a finite number >= 0."""
    require(finite(value) and value >= 0, key, "a finite number >= 0", value)


def check_betas(betas: list[float], key: str) -> None:
    """Adam's two betas, each in [0, 1)."""
    require(len(betas) == 2 and all(finite(b) and 0 <= b < 1 for b in betas), key, "two numbers in [0, 1)", betas)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (JSON/YAML serialisable)."""
    return dataclasses.asdict(config)


def config_to_json(config: Any) -> str:
    return json.dumps(config_to_dict(config), sort_keys=True)


def config_from_dict(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a nested dict, checking names and coercing scalar types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {key: _coerce(hints[key], value, f"{where}.{key}") for key, value in values.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if hint is Any:
        return value
    return _coerce_scalar(hint, value, where)


def _coerce_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "2e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr_backbone=1e-3"`` -> (["optim", "lr_backbone"], 0.001); the value is YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected key.path=value")
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); validation happens in :func:`config_from_dict`."""
    result = json.loads(json.dumps(values))
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        node[path[-1]] = value
    return result


CONFIG_SUFFIX = ".yaml"


def shipped_configs() -> dict[str, Path]:
    """The configs installed with the package (``contrafuse/configs/*.yaml``), by name (file stem)."""
    folder = resources.files("contrafuse") / "configs"
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(CONFIG_SUFFIX):
            found[entry.name[: -len(CONFIG_SUFFIX)]] = Path(str(entry))
    return dict(sorted(found.items()))


def find_config(spec: str | os.PathLike) -> Path:
    """The config file ``spec`` names: an existing file, else a shipped config by name.

    ``cs2fusion_smoke``, ``cs2fusion_smoke.yaml`` and (for commands written against a
    checkout) ``configs/cs2fusion_smoke.yaml`` all name the shipped file when no such file
    exists here; anything else that is not a file is an error listing the shipped names.
    """
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_configs()
    name = path.name[: -len(CONFIG_SUFFIX)] if path.name.endswith(CONFIG_SUFFIX) else path.name
    if path.parent in (Path("."), Path("configs")) and name in shipped:
        return shipped[name]
    raise ConfigError(f"{spec}: config file not found, and not the name of a shipped config "
                      f"({', '.join(shipped)})")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML config file, or of a shipped config given by name (see :func:`find_config`)."""
    path = find_config(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return values
