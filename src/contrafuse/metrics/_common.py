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


IMAGE_ROLES = ("fused", "ir", "vis")


@dataclass(kw_only=True)
class FusionImages:
    """The ``fused`` image and its ``ir`` and ``vis`` sources: float64 ``(H, W)``, integers 0..255.

    Construct with keywords. ``cache`` holds intermediates shared between metrics (dtype
    copies, Sobel responses, co-moments) so a suite computes each of them once.
    """

    fused: np.ndarray
    ir: np.ndarray
    vis: np.ndarray
    cache: dict = field(default_factory=dict)

    def cached(self, key: str, compute):
        """Return ``cache[key]``, computing it with ``compute()`` the first time."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def image(self, role: str) -> np.ndarray:
        """The image named ``role``: ``"fused"``, ``"ir"`` or ``"vis"``."""
        if role not in IMAGE_ROLES:
            raise ValueError(f"unknown image {role!r}; choose one of {', '.join(IMAGE_ROLES)}")
        return getattr(self, role)

    def as_uint8(self, role: str) -> np.ndarray:
        """``fused``, ``ir`` or ``vis`` as uint8 (values are integers 0..255 already)."""
        return self.cached(f"u8_{role}", lambda: self.image(role).astype(np.uint8))

    def as_float32(self, role: str) -> np.ndarray:
        """``fused``, ``ir`` or ``vis`` as float32, the precision the CDDFuse evaluator works in."""
        return self.cached(f"f32_{role}", lambda: self.image(role).astype(np.float32))


def check_convention(convention: str) -> str:
    """Validate a convention name; returns it lower-cased."""
    name = str(convention).lower()
    if name not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return name
