"""Reflection padding to a size multiple, and cropping back: for networks with poolings."""
from __future__ import annotations

import torch
from torch import Tensor


def reflect_indices(size: int, before: int, after: int, device: torch.device | None = None) -> Tensor:
    """Indices padding a side of ``size`` by reflection, ``before``/``after`` of any length.

    Equal to ``F.pad(..., mode="reflect")`` when both pads are below ``size``; longer pads keep
    reflecting (the same as reflecting in steps); a side of 1 is replicated.
    """
    index = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Reflection-pad ``(..., H, W)`` to multiples of ``multiple``, split evenly between sides.

    Returns the padded tensor and ``(top, left, H, W)`` for :func:`crop`.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    top, left = pad_h // 2, pad_w // 2
    if pad_h:
        x = x.index_select(-2, reflect_indices(h, top, pad_h - top, x.device))
    if pad_w:
        x = x.index_select(-1, reflect_indices(w, left, pad_w - left, x.device))
    return x, (top, left, h, w)


def crop(x: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    top, left, h, w = box
    return x[..., top : top + h, left : left + w]
