"""Display panels: any image as ``uint8`` RGB, shrunk to a width, and laid out in contact sheets
(the benchmark's report grids and training's validation samples)."""
from __future__ import annotations

import numpy as np
from PIL import Image


def to_display(image: np.ndarray) -> np.ndarray:
    """``uint8``/``uint16`` gray or RGB pixels -> ``uint8`` RGB ``(H, W, 3)``."""
    if image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image.astype(np.uint8))


def downscale(image: np.ndarray, max_width: int) -> np.ndarray:
    """Shrink to at most ``max_width`` pixels wide (aspect kept); smaller images are unchanged."""
    height, width = image.shape[:2]
    if width <= max_width:
        return image
    size = (max_width, max(1, round(height * max_width / width)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def contact_sheet(rows: list[list[np.ndarray]], titles: list[str], cell_width: int = 256, gap: int = 4) -> np.ndarray:
    """Panels side by side, one row per list, each cell ``cell_width`` wide, with column titles.

    Args:
        rows: per row, one gray or RGB panel per column (``uint8``/``uint16``); rows may differ in shape.
        titles: one title per column, written above the first row.

    Returns:
        ``uint8`` RGB ``(H, W, 3)`` on a white background.
    """
    from PIL import ImageDraw

    columns = len(titles)
    scaled = [[_fit_width(to_display(panel), cell_width) for panel in row] for row in rows]
    heights = [max(p.shape[0] for p in row) for row in scaled]
    header = 14
    sheet = np.full((header + sum(heights) + gap * len(rows), columns * (cell_width + gap) - gap, 3), 255, np.uint8)
    top = header
    for row, height in zip(scaled, heights):
        for c, panel in enumerate(row):
            left = c * (cell_width + gap)
            sheet[top : top + panel.shape[0], left : left + panel.shape[1]] = panel
        top += height + gap
    canvas = Image.fromarray(sheet)
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
        draw.text((c * (cell_width + gap) + 2, 1), title, fill=(0, 0, 0))
    return np.asarray(canvas)


def _fit_width(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` resized to ``width`` pixels wide, aspect kept (up or down)."""
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))
