"""Occluded visible patches for CS2Fusion's self-supervision ("A" images: VIS with black squares).

The authors pre-generated these images and did not publish how. Our policy, applied on the
fly from the sample's RNG: draw ``count`` uniformly in [min_count, max_count]; for each square
draw a side uniformly in [min_fraction, max_fraction] x patch side (at least 1 pixel) and a
position uniformly among those that keep it inside the patch; set the pixels to ``fill``
(0 = black, as in the authors' figure). Squares may overlap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class OcclusionPolicy:
    """How many squares, how large (fraction of the patch side) and what value."""

    min_count: int = 1
    max_count: int = 3
    min_fraction: float = 0.125
    max_fraction: float = 0.375
    fill: float = 0.0  # in the patch's value range ([0, 1] for our patches)

    def check(self) -> None:
        if not 0 <= self.min_count <= self.max_count:
            raise ValueError(f"occlusion counts need 0 <= min_count <= max_count, got {self.min_count}, {self.max_count}")
        if not 0 < self.min_fraction <= self.max_fraction <= 1:
            raise ValueError(f"occlusion fractions need 0 < min <= max <= 1, got {self.min_fraction}, {self.max_fraction}")


def occlude(patch: np.ndarray, rng: np.random.Generator, policy: OcclusionPolicy | None = None) -> np.ndarray:
    """A copy of the ``(H, W)`` patch with random filled squares (see module doc)."""
    policy = policy or OcclusionPolicy()
    policy.check()
    out = np.array(patch, copy=True)
    height, width = out.shape[-2:]
    side_limit = min(height, width)
    for _ in range(int(rng.integers(policy.min_count, policy.max_count + 1))):
        fraction = rng.uniform(policy.min_fraction, policy.max_fraction)
        side = max(1, min(side_limit, int(round(fraction * side_limit))))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        out[..., top : top + side, left : left + side] = policy.fill
    return out
