"""Image grids for the reports: which pairs to show, where to zoom, and the zoom inset itself.

Every panel of one pair (IR, VIS and each method's result) gets the same zoom box, picked
where the two sources hold the most gradient energy, so the insets compare like with like.
Panels are ``uint8`` RGB ``(H, W, 3)`` arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..color import rgb_to_luma

INSET_COLOR = (255, 48, 48)


@dataclass(frozen=True)
class ZoomBox:
    """A square region ``[top, top + size) x [left, left + size)`` of the image."""

    top: int
    left: int
    size: int


def choose_pairs(names: list[str], count: int, wanted: list[str] | None = None) -> list[str]:
    """``wanted`` names (those present) if given, else ``count`` names spread evenly over ``names``."""
    if wanted:
        return [n for n in wanted if n in names]
    if count <= 0 or not names:
        return []
    if count >= len(names):
        return list(names)
    picks = np.linspace(0, len(names) - 1, count).round().astype(int)
    return [names[i] for i in dict.fromkeys(picks.tolist())]


def to_display(image: np.ndarray) -> np.ndarray:
    """``uint8``/``uint16`` gray or RGB pixels -> ``uint8`` RGB ``(H, W, 3)``."""
    if image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image.astype(np.uint8))


def choose_zoom(ir: np.ndarray, vis: np.ndarray, fraction: float = 0.22) -> ZoomBox:
    """The square of side ``fraction * min(H, W)`` with the most gradient energy in IR + VIS.

    The search runs on a grid of quarter-window steps and avoids the corner where the inset
    is drawn (bottom right), so the marked region stays visible.
    """
    energy = np.zeros(vis.shape[:2])
    for image in (ir, vis):
        gray = rgb_to_luma(to_display(image))
        gy, gx = np.gradient(gray)
        energy += np.hypot(gx, gy)
    height, width = energy.shape
    size = max(4, int(round(fraction * min(height, width))))
    size = min(size, height, width)
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, size // 4)
    best, box = -1.0, ZoomBox(0, 0, size)
    for top in range(0, height - size + 1, step):
        for left in range(0, width - size + 1, step):
            if top + size > height * 0.55 and left + size > width * 0.55:
                continue  # under the inset
            total = integral[top + size, left + size] - integral[top, left + size] - integral[top + size, left] + integral[top, left]
            if total > best:
                best, box = total, ZoomBox(top, left, size)
    return box


def _outline(image: np.ndarray, top: int, left: int, height: int, width: int, thickness: int) -> None:
    color = np.array(INSET_COLOR, dtype=np.uint8)
    image[top : top + thickness, left : left + width] = color
    image[top + height - thickness : top + height, left : left + width] = color
    image[top : top + height, left : left + thickness] = color
    image[top : top + height, left + width - thickness : left + width] = color


def with_inset(image: np.ndarray, box: ZoomBox, scale: float = 0.42) -> np.ndarray:
    """A copy of ``image`` with ``box`` outlined and magnified into the bottom-right corner.

    Args:
        image: gray or RGB pixels (``uint8``/``uint16``).
        box: the region to magnify.
        scale: inset side as a fraction of the image's shorter side.

    Returns:
        ``uint8`` RGB ``(H, W, 3)``.
    """
    panel = to_display(image).copy()
    height, width = panel.shape[:2]
    thickness = max(1, min(height, width) // 150)
    side = max(box.size, int(scale * min(height, width)))
    crop = panel[box.top : box.top + box.size, box.left : box.left + box.size]
    zoomed = np.asarray(Image.fromarray(crop).resize((side, side), Image.Resampling.NEAREST))
    _outline(panel, box.top, box.left, box.size, box.size, thickness)
    top, left = height - side, width - side
    panel[top:, left:] = zoomed
    _outline(panel, top, left, side, side, thickness)
    return panel


def downscale(image: np.ndarray, max_width: int) -> np.ndarray:
    """Shrink to at most ``max_width`` pixels wide (aspect kept); smaller images are unchanged."""
    height, width = image.shape[:2]
    if width <= max_width:
        return image
    size = (max_width, max(1, round(height * max_width / width)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
