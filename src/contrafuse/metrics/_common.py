"""The three gray images of one evaluation and the intermediates several metrics share."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

CONVENTIONS = ("cddfuse", "matlab")


class MetricWarning(UserWarning):
    """A metric fell back to a documented value (e.g. a correlation with a constant image)."""


def warn_fallback(metric: str, reason: str, value: float) -> None:
    """Say loudly that ``metric`` returned the documented fallback ``value`` and why."""
    warnings.warn(f"{metric}: {reason}; returning {value:g} (documented fallback)", MetricWarning, stacklevel=3)


@dataclass
class FusionImages:
    """Fused image ``f`` and sources ``a`` (IR) and ``b`` (VIS): float64 ``(H, W)``, integers 0..255.

    ``cache`` holds intermediates shared between metrics (gradients, histograms) so a suite
    computes each of them once.
    """

    f: np.ndarray
    a: np.ndarray
    b: np.ndarray
    cache: dict = field(default_factory=dict)

    def cached(self, key: str, compute):
        """Return ``cache[key]``, computing it with ``compute()`` the first time."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def as_uint8(self, which: str) -> np.ndarray:
        """``f``, ``a`` or ``b`` as uint8 (values are integers 0..255 already)."""
        return self.cached(f"u8_{which}", lambda: getattr(self, which).astype(np.uint8))

    def as_float32(self, which: str) -> np.ndarray:
        """``f``, ``a`` or ``b`` as float32, the precision the CDDFuse evaluator works in."""
        return self.cached(f"f32_{which}", lambda: getattr(self, which).astype(np.float32))


def check_convention(convention: str) -> str:
    """Validate a convention name; returns it lower-cased."""
    name = str(convention).lower()
    if name not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return name
