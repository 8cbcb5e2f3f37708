"""Scoring fused images against their sources: one job, many jobs, and mean/std summaries.

The one evaluation loop of contrafuse: ``contrafuse eval`` and the benchmark runner both
score through :func:`score_many` and summarise through :func:`mean_and_std`. A job is a
fused file with its ``ir`` and ``vis`` sources, given by keyword. A bad job never raises:
its :class:`Score` carries the error, naming the fused file. The infrared source is scored as
the model saw it: through its window (``ir_range``, :mod:`contrafuse.thermal`), so that a
radiometric image is judged by its windowed luma; 8-bit and full-range 16-bit sources are read
as before. Workflow layer: imports the metrics, io and thermal, no model and no torch.

    >>> scores = score_many(["f/01.png"], ir=["ir/01.png"], vis=["vis/01.png"], names=["EN", "MI"])
    >>> mean_and_std([s.values for s in scores if s.ok], ["EN", "MI"]).mean
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import metrics
from .errors import ContrafuseError
from .io import read_image
from .thermal import IrRange, parse_ir_range, window, windowed_luma01

PathLike = str | os.PathLike


@dataclass
class Score:
    """The metric values of one job, or the error that stopped it, and the metric warnings.

    ``values`` maps metric name -> value (in the order asked for) and is None when ``error``
    is set; ``warnings`` are the :class:`~contrafuse.metrics.MetricWarning` messages (the
    documented fallbacks), each prefixed with the fused file.
    """

    values: dict[str, float] | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the job was scored."""
        return self.values is not None


def score_one(
    fused: PathLike,
    *,
    ir: PathLike,
    vis: PathLike,
    names: Sequence[str] | str | None = None,
    convention: str = metrics.DEFAULT_CONVENTION,
    ir_range: str | IrRange = "auto",
) -> Score:
    """Metrics of one fused file against its sources; never raises for a bad image.

    Args:
        fused, ir, vis: image files (see :func:`contrafuse.metrics.compute` for what they may hold).
        names: metric names as :func:`contrafuse.metrics.resolve_names` takes them.
        convention: ``"cddfuse"`` or ``"matlab"``.
        ir_range: the infrared window the fused image was made with (see :func:`infrared_source`).

    Returns:
        A :class:`Score`: the values, or the error message (unreadable file, size mismatch,
        image too small for a metric) naming the fused file.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", metrics.MetricWarning)
        try:
            values = metrics.compute(fused, ir=infrared_source(ir, ir_range), vis=vis, names=names, convention=convention)
        except (ContrafuseError, ValueError, OSError) as exc:
            return Score(error=_naming_file(fused, exc))
    notes = []
    for warning in caught:
        if issubclass(warning.category, metrics.MetricWarning):
            notes.append(f"{fused}: {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return Score(values=values, warnings=notes)


def infrared_source(ir: PathLike, ir_range: str | IrRange = "auto") -> PathLike | np.ndarray:
    """The infrared source as the metrics see it: the file itself when its window is the full
    scale (8-bit and full-range 16-bit images under ``auto``: unchanged), else its windowed luma
    as float ``(H, W)`` on 0..255, the scale of every metric (rounded there like any float input).
    """
    pixels = read_image(ir)
    bounds = window(pixels, parse_ir_range(ir_range))
    return ir if bounds is None else windowed_luma01(pixels, bounds) * 255.0


def _naming_file(fused: PathLike, exc: Exception) -> str:
    """The exception's message, prefixed with the fused file unless it names it already."""
    message = str(exc)
    return message if str(Path(fused)) in message else f"{fused}: {message}"


def _score_job(job: tuple[PathLike, PathLike, PathLike], names: Sequence[str], convention: str, ir_range: IrRange) -> Score:
    fused, ir, vis = job
    return score_one(fused, ir=ir, vis=vis, names=names, convention=convention, ir_range=ir_range)


def score_many(
    fused: Sequence[PathLike],
    *,
    ir: Sequence[PathLike],
    vis: Sequence[PathLike],
    names: Sequence[str] | str | None = None,
    convention: str = metrics.DEFAULT_CONVENTION,
    workers: int = 1,
    progress: bool | None = None,
    desc: str = "metrics",
    ir_range: str | IrRange = "auto",
) -> list[Score]:
    """:func:`score_one` of every ``(fused[i], ir[i], vis[i])``, in that order.

    Args:
        fused, ir, vis: equally long sequences of image files.
        names, convention: as for :func:`score_one` (resolved once, so a bad name raises
            ``ValueError`` before any image is read).
        workers: processes scoring in parallel (> 1 uses a process pool when there are at
            least two jobs).
        progress: a tqdm bar on stderr: True shows it, False hides it, None shows it on a
            terminal only.
        desc: the bar's label.
        ir_range: the infrared window the fused images were made with (:func:`infrared_source`).

    Returns:
        One :class:`Score` per job, in job order.
    """
    if not len(fused) == len(ir) == len(vis):
        raise ValueError(f"score_many: {len(fused)} fused, {len(ir)} ir and {len(vis)} vis files; need one of each per job")
    names = metrics.resolve_names(names)
    ir_range = parse_ir_range(ir_range)
    jobs = list(zip(fused, ir, vis))
    if not jobs:
        return []
    from tqdm import tqdm

    disable = None if progress is None else not progress
    with tqdm(total=len(jobs), desc=desc, unit="img", file=sys.stderr, disable=disable) as bar:
        if workers <= 1 or len(jobs) == 1:
            scores = []
            for job in jobs:
                scores.append(_score_job(job, names, convention, ir_range))
                bar.update()
            return scores
        return _score_in_pool(jobs, names, convention, ir_range, min(workers, len(jobs)), bar)


def _score_in_pool(jobs: list, names: list[str], convention: str, ir_range: IrRange, workers: int, bar) -> list[Score]:
    """Score ``jobs`` in ``workers`` processes; the bar moves as each one finishes."""
    scores: list[Score | None] = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_score_job, job, names, convention, ir_range): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            scores[futures[future]] = future.result()
            bar.update()
    return scores


@dataclass(frozen=True)
class MeanStd:
    """Mean and population std per metric over ``count`` rows (NaN everywhere when count is 0)."""

    mean: dict[str, float]
    std: dict[str, float]
    count: int


def mean_and_std(rows: Iterable[Mapping[str, float]], names: Sequence[str]) -> MeanStd:
    """Mean and population std (``np.std``) of each metric in ``names`` over ``rows``.

    A non-finite value propagates (an ``inf`` PSNR gives an ``inf`` mean and a NaN std).
    """
    rows = list(rows)
    if not rows:
        nan = {n: math.nan for n in names}
        return MeanStd(nan, dict(nan), 0)
    table = np.array([[row[n] for n in names] for row in rows], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mean, std = table.mean(axis=0), table.std(axis=0)
    return MeanStd(dict(zip(names, mean.tolist())), dict(zip(names, std.tolist())), len(table))


def finite_or_none(value: float) -> float | None:
    """``value``, or None for NaN and +-inf: strict JSON has no NaN or Infinity, ``null`` stands in."""
    return value if math.isfinite(value) else None


__all__ = ["MeanStd", "Score", "finite_or_none", "infrared_source", "mean_and_std", "score_many", "score_one"]
