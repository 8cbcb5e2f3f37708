"""A model that works on another pixel scale, seen through the registry's [0, 1] contract."""
from __future__ import annotations

from torch import Tensor, nn


class AtValueScale(nn.Module):
    """``forward(*, ir, vis)`` on [0, 1] luma around a module that works at ``scale`` (e.g. 255)."""

    def __init__(self, network: nn.Module, scale: float) -> None:
        super().__init__()
        self.network, self.scale = network, float(scale)

    def forward(self, *, ir: Tensor, vis: Tensor) -> Tensor:
        return self.network(ir=ir * self.scale, vis=vis * self.scale) / self.scale
