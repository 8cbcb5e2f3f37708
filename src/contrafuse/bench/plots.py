"""Paper-ready figures with matplotlib (optional extra ``report``): box plots and image grids.

matplotlib is imported only when a figure is drawn, with the non-interactive Agg backend,
so the rest of the benchmark works without it. Every figure is written as PNG and PDF.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import ContrafuseError
from .summary import direction
from ..atomic import write_bytes

FORMATS = ("png", "pdf")
MISSING_MATPLOTLIB = "figures need matplotlib: pip install 'contrafuse[report]' (or pass --no-plots)"


def available() -> bool:
    """True when matplotlib can be imported (the figures can be drawn)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or a clear error naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise ContrafuseError(MISSING_MATPLOTLIB) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(figure, base: Path, formats: tuple[str, ...], dpi: int) -> list[Path]:
    """Save ``figure`` as ``base.<fmt>`` for each format, atomically."""
    import io

    written = []
    for fmt in formats:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight", metadata=_metadata(fmt))
        written.append(write_bytes(base.with_suffix(f".{fmt}"), buffer.getvalue(), overwrite=True))
    return written


def _metadata(fmt: str) -> dict[str, str | None]:
    # No creation date: the same results give the same files.
    if fmt == "pdf":
        return {"Creator": "contrafuse bench", "CreationDate": None}
    if fmt == "png":
        return {"Software": "contrafuse bench"}
    return {}


def box_plots(
    values: dict[str, dict[str, dict[str, float]]],
    metric_names: list[str],
    base: str | os.PathLike,
    title: str = "",
    formats: tuple[str, ...] = FORMATS,
    dpi: int = 150,
) -> list[Path]:
    """One box plot per metric of the per-image values of each method.

    Args:
        values: method -> image -> metric -> value.
        metric_names: the metrics to plot, one panel each (arrow = better direction).
        base: output path without suffix; ``base.png`` and ``base.pdf`` are written.

    Returns:
        The files written.
    """
    plt = _pyplot()
    methods = list(values)
    columns = min(4, len(metric_names))
    rows = math.ceil(len(metric_names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for axis, name in zip(axes.flat, metric_names):
        data = [[row[name] for row in values[m].values() if math.isfinite(row[name])] for m in methods]
        axis.boxplot(data, showmeans=True, meanprops={"marker": "^", "markersize": 4})
        axis.set_xticks(range(1, len(methods) + 1), methods)
        arrow = "↑" if direction(name) == "higher" else "↓"
        axis.set_title(f"{name} {arrow}", fontsize=10)
        axis.tick_params(axis="x", labelrotation=35, labelsize=8)
        axis.tick_params(axis="y", labelsize=8)
        axis.grid(axis="y", alpha=0.3)
    for axis in list(axes.flat)[len(metric_names):]:
        axis.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    try:
        return _save(figure, Path(base), formats, dpi)
    finally:
        plt.close(figure)


def image_grid(
    rows: list[tuple[str, list[tuple[str, np.ndarray]]]],
    base: str | os.PathLike,
    formats: tuple[str, ...] = FORMATS,
    panel_width: float = 2.0,
    dpi: int = 200,
) -> list[Path]:
    """A grid of panels: one row per pair, one column per source or method.

    Each row is as tall as its own panels' aspect needs, so pairs of different shapes
    (landscape and portrait) sit together without gaps.

    Args:
        rows: ``(pair name, [(column title, uint8 RGB (H, W, 3) panel), ...])`` per row; every
            row has the same columns (the panels already carry their zoom insets).
        base: output path without suffix.
        panel_width: width of one panel in inches.
    """
    plt = _pyplot()
    columns = len(rows[0][1])
    aspects = [max(panel.shape[0] / panel.shape[1] for _, panel in panels) for _, panels in rows]
    title_space = 0.25  # inches above the first row for the column titles
    height = panel_width * sum(aspects)
    figure = plt.figure(figsize=(panel_width * columns, height + title_space))
    grid = figure.add_gridspec(len(rows), columns, height_ratios=aspects, left=0.02, right=0.99, bottom=0.005,
                               top=height / (height + title_space), wspace=0.03, hspace=0.03)
    for r, (name, panels) in enumerate(rows):
        for c, (label, panel) in enumerate(panels):
            axis = figure.add_subplot(grid[r, c])
            axis.imshow(panel, interpolation="lanczos")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(label, fontsize=9)
            if c == 0:
                axis.set_ylabel(name, fontsize=8)
    try:
        return _save(figure, Path(base), formats, dpi)
    finally:
        plt.close(figure)
