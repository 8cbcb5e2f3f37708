"""Image-fusion quality metrics with reference-exact conventions.

    >>> from contrafuse import metrics
    >>> metrics.compute("fused/01.png", ir="ir/01.png", vis="vis/01.png")     # cddfuse convention
    >>> metrics.compute(fused, ir=ir, vis=vis, names=["MI", "SSIM"], convention="matlab")
    >>> metrics.list()                 # MetricInfo of every metric: name, direction, domain, reduction, ...
    >>> metrics.names()                # just the names; metrics.metric_info("Qabf") describes one

Two conventions are built in: ``"cddfuse"`` (default; the CDDFuse Python evaluator) and
``"matlab"`` (Tang's MATLAB evaluation code). See docs/metrics.md for every difference.
The package is pure NumPy/SciPy and imports no model code.
"""
from __future__ import annotations

import builtins
import os
from collections.abc import Iterable

import numpy as np

from ._common import CONVENTIONS, FusionImages, MetricWarning, check_convention
from ._gray import load_gray, load_triplet, to_gray
from .registry import ALL_NAMES, DEFAULT_NAMES, METRICS, MetricError, MetricInfo

DEFAULT_CONVENTION = "cddfuse"


def resolve_names(names: Iterable[str] | str | None) -> list[str]:
    """Validated metric names; ``None`` -> :data:`DEFAULT_NAMES`, ``"all"`` -> every metric.

    Names are matched case-insensitively (``ms-ssim`` and ``MS_SSIM`` both work).
    """
    if names is None:
        return [*DEFAULT_NAMES]
    if isinstance(names, str):
        names = [n for n in names.replace(",", " ").split() if n]
    lookup = {key.lower().replace("-", "_"): key for key in METRICS}
    resolved: list[str] = []
    for name in names:
        key = str(name).lower().replace("-", "_")
        if key == "all":
            resolved.extend(n for n in ALL_NAMES if n not in resolved)
            continue
        if key == "default":
            resolved.extend(n for n in DEFAULT_NAMES if n not in resolved)
            continue
        if key not in lookup:
            raise MetricError(f"unknown metric {name!r}; known: {', '.join(ALL_NAMES)}")
        if lookup[key] not in resolved:
            resolved.append(lookup[key])
    return resolved


def compute(
    fused: str | os.PathLike | np.ndarray,
    *,
    ir: str | os.PathLike | np.ndarray,
    vis: str | os.PathLike | np.ndarray,
    names: Iterable[str] | str | None = None,
    convention: str = DEFAULT_CONVENTION,
) -> dict[str, float]:
    """Metrics of one fused image against its IR and VIS sources.

    Args:
        fused, ir, vis: paths or arrays (uint8/uint16/float 0..255; gray ``(H, W)`` or RGB
            ``(H, W, 3)``, converted to gray like the CDDFuse evaluator), of one ``(H, W)``.
            ``ir`` and ``vis`` are keyword-only: a swapped pair must not pass unnoticed.
        names: metric names (see :func:`names`); ``None`` = :data:`DEFAULT_NAMES` (everything
            except the MATLAB-only extras FMI_* (seconds per image) and MS_SSIM (~0.15 s));
            ``"all"`` = every metric.
        convention: ``"cddfuse"`` (default) or ``"matlab"``.

    Returns:
        ``{name: value}`` in the order asked for. The convention is not a key; callers that
        print results should print it (the CLI does).

    Raises:
        PairError: sizes differ (message names the files). ImageReadError: unreadable file.
        ValueError: unknown metric or convention, or an image too small for VIF / MS_SSIM.
    """
    convention = check_convention(convention)
    selected = resolve_names(names)
    fused_gray, ir_gray, vis_gray = load_triplet(fused, ir=ir, vis=vis)
    images = FusionImages(fused=fused_gray, ir=ir_gray, vis=vis_gray)
    return {name: float(METRICS.get(name).func(images, convention)) for name in selected}


def names() -> builtins.list[str]:
    """Names of every metric, in display order (:data:`ALL_NAMES` as a list)."""
    return [*ALL_NAMES]


# shadows the builtin list inside this module: annotations here say builtins.list
def list() -> builtins.list[MetricInfo]:
    """Every metric's :class:`MetricInfo` (name, description, direction, domain, reduction,
    per-convention notes, whether it is in the default set), in display order.

    ``[m.as_dict() for m in metrics.list()]`` is the same as plain data (for JSON).
    """
    return [METRICS.get(name) for name in ALL_NAMES]


def metric_info(name: str) -> MetricInfo:
    """Description, direction, domain, reduction and per-convention notes of one metric."""
    return METRICS.get(resolve_names([name])[0])


__all__ = [
    "ALL_NAMES",
    "CONVENTIONS",
    "DEFAULT_CONVENTION",
    "DEFAULT_NAMES",
    "FusionImages",
    "METRICS",
    "MetricError",
    "MetricInfo",
    "MetricWarning",
    "compute",
    "list",
    "load_gray",
    "load_triplet",
    "metric_info",
    "names",
    "resolve_names",
    "to_gray",
]
