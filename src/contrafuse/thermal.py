"""Radiometric thermal input: the intensity window that maps an infrared image to [0, 1].

Thermal cores deliver 14- or 16-bit counts that fill a narrow band of 0..65535 (e.g. 7000 to
9000), or float temperatures (possibly NaN for dead pixels). Divided by the full scale, such an
image is a nearly flat grey and its targets vanish from the fusion. An :class:`IrRange` says
how to window it:

* ``full``: divide by the dtype's full scale (255 or 65535) - the behaviour for 8-bit images.
* ``LOW:HIGH``: a fixed window in the image's own units (counts, or degrees for float data).
* ``pLOW:pHIGH``: the window between two percentiles of the image's finite pixels.
* ``auto`` (the default): ``full`` for 8-bit images and for 16-bit images that use the range
  (the 0.1-99.9 percentile spread covers at least a quarter of 0..65535); otherwise, and always
  for float images, the percentile window ``p0.5:p99.5``. So 8-bit and full-range 16-bit inputs
  are unchanged.

Values outside the window are clipped; NaN and infinite pixels become the window's low end.
Only the infrared image is windowed; the visible image is always divided by its full scale. A
clip (video) holds one window for all its frames: :func:`resolve` turns ``auto`` or a percentile
window into the fixed window of one frame. NumPy only (base layer).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .color import rgb_to_luma
from .errors import ContrafuseError

AUTO_PERCENTILES = (0.5, 99.5)
NARROW_BAND = 0.25  # a 16-bit image whose robust spread is below this share of 65535 is radiometric
_SPREAD_PERCENTILES = (0.1, 99.9)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class IrRangeError(ContrafuseError, ValueError):
    """An infrared range that cannot be parsed or does not fit the image."""


@dataclass(frozen=True)
class IrRange:
    """How the infrared image is windowed to [0, 1]: ``kind`` is auto, full, fixed or percentile."""

    kind: str = "auto"
    low: float = 0.0
    high: float = 0.0

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"{self.low:g}:{self.high:g}"
        if self.kind == "percentile":
            return f"p{self.low:g}:p{self.high:g}"
        return self.kind


def parse_ir_range(text: str | IrRange) -> IrRange:
    """``auto``, ``full``, ``LOW:HIGH`` or ``pLOW:pHIGH`` (see the module doc)."""
    if isinstance(text, IrRange):
        return text
    value = str(text).strip().lower()
    if value in ("auto", "full"):
        return IrRange(value)
    match = re.fullmatch(rf"(p?)({_NUMBER}):(p?)({_NUMBER})", value)
    if not match or match.group(1) != match.group(3):
        raise IrRangeError(f"infrared range {text!r}: use auto, full, LOW:HIGH (e.g. 7000:9000) or pLOW:pHIGH (e.g. p1:p99)")
    low, high = float(match.group(2)), float(match.group(4))
    if not low < high:
        raise IrRangeError(f"infrared range {text!r}: the low end must be below the high end")
    if match.group(1):
        if not 0 <= low < high <= 100:
            raise IrRangeError(f"infrared range {text!r}: percentiles lie in 0..100")
        return IrRange("percentile", low, high)
    return IrRange("fixed", low, high)


def _percentiles(pixels: np.ndarray, low: float, high: float) -> tuple[float, float]:
    finite = pixels[np.isfinite(pixels)] if pixels.dtype.kind == "f" else pixels.ravel()
    if finite.size == 0:
        raise IrRangeError("the infrared image has no finite pixel")
    a, b = np.percentile(finite, [low, high])
    return float(a), float(b)


def is_narrow_band(pixels: np.ndarray) -> bool:
    """True for a 16-bit image whose robust spread uses less than a quarter of 0..65535."""
    if pixels.dtype != np.uint16:
        return False
    low, high = _percentiles(pixels, *_SPREAD_PERCENTILES)
    return high - low < NARROW_BAND * 65535


def window(pixels: np.ndarray, spec: str | IrRange = "auto") -> tuple[float, float] | None:
    """The ``(low, high)`` window of ``pixels`` in their own units, or None for the full scale."""
    spec = parse_ir_range(spec)
    floating = pixels.dtype.kind == "f"
    if spec.kind == "full":
        if floating:
            raise IrRangeError("a floating-point infrared image has no full scale: use auto, LOW:HIGH or pLOW:pHIGH")
        return None
    if spec.kind == "fixed":
        return spec.low, spec.high
    if spec.kind == "auto" and not floating and not is_narrow_band(pixels):
        return None
    low, high = _percentiles(pixels, *(AUTO_PERCENTILES if spec.kind == "auto" else (spec.low, spec.high)))
    return (low, high) if high > low else (low, low + 1.0)


def to_unit(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """``values`` (float64, same units as ``bounds``) windowed to [0, 1]; NaN/inf become 0."""
    low, high = bounds
    scaled = (np.asarray(values, dtype=np.float64) - low) / (high - low)
    return np.clip(np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)


def resolve(pixels: np.ndarray, spec: str | IrRange = "auto") -> IrRange:
    """The fixed window (or ``full``) that ``spec`` gives for ``pixels``: to hold one window over
    the frames of a clip, so that brightness does not pump."""
    bounds = window(pixels, spec)
    return IrRange("full") if bounds is None else IrRange("fixed", *bounds)


def windowed_luma01(pixels: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Float64 ``(H, W)`` luma in [0, 1] of gray or RGB ``pixels`` through the window ``bounds``
    (in the pixels' own units; see :func:`window`)."""
    values = rgb_to_luma(pixels) if pixels.ndim == 3 else np.asarray(pixels, dtype=np.float64)
    return to_unit(values, bounds)


def for_display(pixels: np.ndarray, spec: str | IrRange = "auto") -> np.ndarray:
    """``pixels`` as they are when ``spec`` gives the full scale, else their windowed luma as
    ``uint8`` gray ``(H, W)``: how an infrared source is shown beside its fused results."""
    bounds = window(pixels, spec)
    return pixels if bounds is None else np.rint(windowed_luma01(pixels, bounds) * 255).astype(np.uint8)
