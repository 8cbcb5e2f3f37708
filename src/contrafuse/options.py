"""The pipeline's settings: :class:`FuseOptions` and the choices it holds.

One set of settings is shared by single pairs, folders, videos, benchmarks and the demo page;
every entry point builds a :class:`FuseOptions` and hands it to the fusing session
(:class:`contrafuse.session.Fuser`). Invalid values raise :class:`FuseOptionError`, a
:class:`~contrafuse.errors.ContrafuseError` (and a ``ValueError``) that names the option.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .alignment import AlignOptionError, as_registration, check_confidence_threshold, check_mode, resolve_direction
from .errors import ContrafuseError
from .registration import DEFAULT_MIN_CONFIDENCE, FINE_STAGES, VERIFY_BELOW, Registration
from .thermal import IrRange, parse_ir_range

BACKENDS = ("auto", "torch", "onnxruntime")  # how a registered model runs; see contrafuse.onnx_cache


class FuseOptionError(ContrafuseError, ValueError):
    """A fuse option with a value it cannot take."""


class UnknownOptionError(FuseOptionError, TypeError):
    """A fuse option name that does not exist (a ``TypeError``, as for an unknown keyword)."""


class Precision(str, Enum):
    """Arithmetic a model runs in."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


class PrecisionError(ContrafuseError):
    """A precision was asked for that this model, backend or device cannot run."""


def as_precision(value: Precision | str | None) -> Precision | None:
    """``value`` as a :class:`Precision` (None stays None: full precision, or a file's own)."""
    if value is None or isinstance(value, Precision):
        return value
    try:
        return Precision(str(value).lower())
    except ValueError:
        choices = ", ".join(p.value for p in Precision)
        raise PrecisionError(f"precision must be one of {choices}, got {value!r}") from None


class Color(str, Enum):
    """Colour of the output: ``auto`` keeps colour when an input has it."""

    AUTO = "auto"
    GRAY = "gray"
    COLOR = "color"


class Gamut(str, Enum):
    """How a colour that falls outside RGB after the chroma is put back becomes a pixel.

    ``clip`` clips each channel (what the methods' reference code does); ``hue`` scales the
    chroma into range, keeping luma and hue (:func:`~contrafuse.color.ycbcr_to_rgb_in_gamut`);
    ``auto``: ``hue`` when the chroma comes from a pseudo-colour functional image given as
    ``ir`` (its hue encodes the tracer value), ``clip`` when it comes from the visible image.
    """

    AUTO = "auto"
    CLIP = "clip"
    HUE = "hue"


class Rounding(str, Enum):
    """Float to integer: ``round`` to nearest, or ``truncate`` as the authors' reference code."""

    ROUND = "round"
    TRUNCATE = "truncate"


def choice_of(enum: type[Enum], value: Any, what: str) -> Any:
    """``value`` (a member or its string) as a member of ``enum``; a :class:`FuseOptionError` naming ``what``."""
    try:
        return enum(value.value if isinstance(value, Enum) else value)
    except ValueError:
        choices = ", ".join(m.value for m in enum)  # type: ignore[attr-defined]
        raise FuseOptionError(f"{what} must be one of {choices}, got {value!r}") from None


@dataclass(frozen=True)
class FuseOptions:
    """How pairs are turned into output images (everything except the model and device).

    Strings are accepted for the enums (``FuseOptions(color="gray", precision="bf16")``).

    * ``color``, ``rounding``, ``resize``: what the output is (see the module docstring).
    * ``precision``: ``None`` (full precision, or an exported file's own), ``"fp32"``,
      ``"fp16"``, ``"bf16"`` (PyTorch autocast) or ``"int8"`` (a quantised ONNX file); see
      :mod:`contrafuse.runtime`.
    * ``batch_size``: same-size pairs per model call in folder, video and bench runs (at full
      precision on a CPU the outputs are byte-identical to one at a time).
    * ``workers``: model calls running at once on a CPU (None: automatic, see
      :func:`contrafuse.runtime.parallel_layout`).
    * ``compile``: run the plain forward through ``torch.compile`` (CUDA; whole images).
    * ``backend``: ``auto`` (default: a registered model that runs faster exported goes
      through a cached ONNX export on a CPU, else PyTorch; :mod:`contrafuse.onnx_cache`),
      ``torch`` (always PyTorch, the reference path) or ``onnxruntime`` (the cached export, or
      an error saying why it cannot run). An ``.onnx`` model is always run by ONNX Runtime.
    * ``ir_range``: how the infrared image is windowed to [0, 1]: ``auto`` (default), ``full``,
      ``LOW:HIGH`` or ``pLOW:pHIGH`` (:mod:`contrafuse.thermal`; 8-bit and full-range 16-bit
      images are unchanged under ``auto``).
    * ``align``: ``none`` (default: fuse the pair as it is), ``translation``, ``affine`` or
      ``homography``: register each pair first (:mod:`contrafuse.registration`);
      ``transform``: a saved registration (a :class:`~contrafuse.registration.Registration` or
      the JSON file ``contrafuse align`` writes) applied to every pair instead; ``direction``:
      ``ir_to_vis`` (the infrared image is warped into the visible frame; the default) or
      ``vis_to_ir`` (None: the transform's own, else ``ir_to_vis``); ``align_every``: videos
      only, re-estimate every N frames (0, the default: once, on the first frame);
      ``min_confidence``: estimated pairs whose confidence is lower are refused (default
      :data:`~contrafuse.registration.DEFAULT_MIN_CONFIDENCE`); ``verify``: register each pair
      both ways and refuse a disagreement (twice the time; see ``docs/registration.md``);
      ``verify_below``: without ``verify``, that check for pairs whose confidence is below this
      (default :data:`~contrafuse.registration.VERIFY_BELOW`; 0: never);
      ``fine``: the last refinement stage, ``ecc`` (default) or ``mattes`` (SimpleITK).
    """

    color: Color = Color.AUTO
    rounding: Rounding = Rounding.ROUND
    gamut: Gamut = Gamut.AUTO
    resize: bool = False  # resample the infrared image to the visible one's size when they differ
    precision: Precision | None = None
    batch_size: int = 1
    workers: int | None = None
    compile: bool = False
    backend: str = "auto"
    ir_range: IrRange = IrRange()
    align: str = "none"
    transform: Registration | None = None
    direction: str | None = None
    align_every: int = 0
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    verify: bool = False
    verify_below: float = VERIFY_BELOW
    fine: str = "ecc"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ir_range", parse_ir_range(self.ir_range))
        object.__setattr__(self, "align", check_mode(self.align))
        object.__setattr__(self, "transform", as_registration(self.transform))
        if self.direction is not None:
            object.__setattr__(self, "direction", resolve_direction(self.direction, self.transform))
        if self.align != "none" and self.transform is not None:
            raise AlignOptionError(f"align={self.align} and a saved transform contradict each other: estimate, or "
                                   "apply the saved one")
        if int(self.align_every) < 0:
            raise AlignOptionError(f"align_every must be >= 0 (0: once, on the first frame), got {self.align_every}")
        for threshold in ("min_confidence", "verify_below"):
            object.__setattr__(self, threshold, check_confidence_threshold(getattr(self, threshold), threshold))
        object.__setattr__(self, "verify", bool(self.verify))
        if self.fine not in FINE_STAGES:
            raise AlignOptionError(f"fine must be one of {', '.join(FINE_STAGES)}, got {self.fine!r}")
        object.__setattr__(self, "color", choice_of(Color, self.color, "color"))
        object.__setattr__(self, "rounding", choice_of(Rounding, self.rounding, "rounding"))
        object.__setattr__(self, "gamut", choice_of(Gamut, self.gamut, "gamut"))
        object.__setattr__(self, "precision", as_precision(self.precision))
        if self.backend not in BACKENDS:
            raise FuseOptionError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if int(self.batch_size) < 1:
            raise FuseOptionError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.workers is not None and int(self.workers) < 1:
            raise FuseOptionError(f"workers must be >= 1 (or None for automatic), got {self.workers}")

    @property
    def aligns(self) -> bool:
        """True when pairs are registered before fusing (an ``align`` mode or a ``transform``)."""
        return self.align != "none" or self.transform is not None

    @property
    def warp_direction(self) -> str:
        """``ir_to_vis`` or ``vis_to_ir``: ``direction``, else the transform's, else ``ir_to_vis``."""
        return resolve_direction(self.direction, self.transform)

    def with_values(self, **values: Any) -> "FuseOptions":
        """A copy with some fields changed (unknown names are an error)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise UnknownOptionError(f"unknown fuse option(s) {', '.join(unknown)}; options: {known}")
        return dataclasses.replace(self, **values)


def model_option_value(text: str) -> Any:
    """A model option's value from the command line: an integer, a float, true/false, else the string."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_model_options(specs: list[str] | None) -> dict[str, Any]:
    """``["border=zeros", "vgg_seed=1"]`` (repeated ``--model-option KEY=VALUE``) as ``{"border": "zeros", "vgg_seed": 1}``."""
    parsed: dict[str, Any] = {}
    for spec in specs or []:
        key, sep, value = spec.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise FuseOptionError(f"--model-option {spec!r}: expected KEY=VALUE, e.g. border=zeros")
        if key.strip() in parsed:
            raise FuseOptionError(f"--model-option {key.strip()} is given twice")
        parsed[key.strip()] = model_option_value(value.strip())
    return parsed


def resolve_options(options: FuseOptions | None, values: dict[str, Any]) -> FuseOptions:
    """``options`` (default :class:`FuseOptions`) with keyword ``values`` applied."""
    return (options or FuseOptions()).with_values(**values)
