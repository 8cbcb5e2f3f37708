"""Classical fusion rules, registered beside the networks; they need no weights."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.geometry.transform import pyrdown
from torch import Tensor, nn

from .registry import register_model


class WeightedAverage(nn.Module):
    """F = w * ir + (1 - w) * vis."""

    def __init__(self, ir_weight: float = 0.5) -> None:
        super().__init__()
        self.ir_weight = ir_weight

    def forward(self, *, ir: Tensor, vis: Tensor) -> Tensor:
        return self.ir_weight * ir + (1.0 - self.ir_weight) * vis


class PixelMaximum(nn.Module):
    """F = max(ir, vis), pixel by pixel: the brighter source wins."""

    def forward(self, *, ir: Tensor, vis: Tensor) -> Tensor:
        return torch.maximum(ir, vis)


def _expand(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """Band-pass levels (finest first) and the low-pass residual last; exact inverse below."""
    bands = []
    for _ in range(levels - 1):
        low = pyrdown(x)
        bands.append(x - _expand(low, x.shape[-2:]))
        x = low
    return bands + [x]


def collapse_pyramid(pyramid: list[Tensor]) -> Tensor:
    x = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        x = band + _expand(x, band.shape[-2:])
    return x


class LaplacianPyramid(nn.Module):
    """Laplacian-pyramid fusion: max-absolute detail bands, averaged base (Burt & Adelson)."""

    def __init__(self, max_levels: int = 5) -> None:
        super().__init__()
        self.max_levels = max_levels

    def levels_for(self, height: int, width: int) -> int:
        """As many levels as keep the coarsest band at least 4 pixels on its short side."""
        return max(1, min(self.max_levels, int(math.log2(max(min(height, width), 1) / 4)) + 1))

    def forward(self, *, ir: Tensor, vis: Tensor) -> Tensor:
        levels = self.levels_for(*ir.shape[-2:])
        pyramid_ir, pyramid_vis = laplacian_pyramid(ir, levels), laplacian_pyramid(vis, levels)
        fused = [torch.where(a.abs() >= b.abs(), a, b) for a, b in zip(pyramid_ir[:-1], pyramid_vis[:-1])]
        return collapse_pyramid(fused + [0.5 * (pyramid_ir[-1] + pyramid_vis[-1])])


@register_model("average")
def average() -> nn.Module:
    return WeightedAverage(0.5)


@register_model("max")
def maximum() -> nn.Module:
    return PixelMaximum()


@register_model("laplacian")
def laplacian() -> nn.Module:
    return LaplacianPyramid()
