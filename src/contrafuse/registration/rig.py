"""One transform for a fixed camera rig, from many pairs: a robust consensus of per-pair estimates.

Two cameras bolted together see every scene through the same transform (up to parallax), so one
estimate per rig is both more precise and safer than one per pair: every pair is registered on its
own, each estimate is described by where it puts the moving image's four corners in the fixed
frame, and the consensus is built from those corners:

1. the per-corner median of all estimates is the robust start;
2. estimates whose mean corner distance from it is more than :data:`OUTLIER_FACTOR` times the
   median distance (and more than :data:`OUTLIER_MIN_PX` fixed pixels) are outliers, reported with
   that distance and never used;
3. the consensus is the mean of the remaining corners, fitted with the rig's motion model; the
   outlier test is repeated once against it.

The spread (the inliers' distances from the consensus) says how well the rig's pairs agree: a
large spread means parallax, a rig that moved, or pairs that are not from one rig.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import ContrafuseError, RegistrationError
from ..io import match_folders
from .files import ImageLike, read_pair
from .method import DEFAULT_MIN_CONFIDENCE, estimate
from .result import Registration

OUTLIER_FACTOR = 3.0
"""An estimate further from the consensus than this many times the median distance is an outlier."""

OUTLIER_MIN_PX = 2.0
"""... and further than this (fixed-frame pixels, mean corner distance): agreement within it is never an outlier."""

MIN_RIG_PAIRS = 2
"""Fewest registered pairs a consensus is built from."""


class RigError(ContrafuseError):
    """No rig transform: too few pairs could be registered, or they do not agree."""


@dataclass
class RigEstimate:
    """The consensus of a rig and how it was reached.

    ``registration``: the rig's transform (its confidence is the median of the pairs used);
    ``used``: ``(name, distance px)`` of the pairs in the consensus, with their mean corner distance
    from it in fixed-frame pixels; ``outliers``: the same for estimates left out; ``failed``:
    ``(name, message)`` of pairs that could not be registered (or read).
    """

    registration: Registration
    used: list[tuple[str, float]] = field(default_factory=list)
    outliers: list[tuple[str, float]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    confidences: dict[str, float] = field(default_factory=dict)

    @property
    def spread(self) -> tuple[float, float]:
        """Median and largest distance (fixed px) of the pairs used from the consensus."""
        distances = [distance for _, distance in self.used]
        return float(np.median(distances)), float(np.max(distances))

    def summary(self) -> dict:
        """What the transform file records of the rig (``rig`` key; readers of the transform ignore it)."""
        median, largest = self.spread
        return {"pairs_used": len(self.used), "outliers": [name for name, _ in self.outliers],
                "failed": [name for name, _ in self.failed],
                "spread_px": {"median": round(median, 3), "max": round(largest, 3)}}


def estimate_rig(
    pairs: Iterable[tuple[str, ImageLike, ImageLike]],
    *,
    mode: str = "affine",
    direction: str = "ir_to_vis",
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    **options,
) -> RigEstimate:
    """One transform for pairs taken by one fixed rig.

    Args:
        pairs: ``(name, ir, vis)`` per pair, images as arrays or files; every infrared image must
            have one size and every visible image one size (a pair of other sizes fails alone).
        mode, direction, min_confidence, options: as for :func:`~contrafuse.registration.estimate`
            (``verify``, ``search``, ``working_size``), applied to each pair.

    Raises:
        RigError: fewer than :data:`MIN_RIG_PAIRS` pairs registered, or the consensus keeps fewer.
    """
    if mode == "none":
        raise ValueError("a rig needs a motion model: translation, affine or homography")
    found: list[tuple[str, Registration]] = []
    failed: list[tuple[str, str]] = []
    for name, ir, vis in pairs:
        try:
            ir_image, vis_image = read_pair(ir=ir, vis=vis)
            registration = estimate(ir=ir_image, vis=vis_image, mode=mode, direction=direction,
                                    min_confidence=min_confidence, name=name, **options)
            if found and (registration.moving_shape, registration.fixed_shape) != (found[0][1].moving_shape, found[0][1].fixed_shape):
                raise RegistrationError(name, f"image sizes differ from the rig's first pair ({found[0][0]})")
            found.append((name, registration))
        except ContrafuseError as exc:
            failed.append((name, str(exc)))
    if len(found) < MIN_RIG_PAIRS:
        raise RigError(f"a rig transform needs at least {MIN_RIG_PAIRS} registered pairs, {len(found)} of "
                       f"{len(found) + len(failed)} could be registered")
    return _consensus(found, failed, mode)


def align_rig(*, ir: str | os.PathLike, vis: str | os.PathLike, mode: str = "affine", **options) -> RigEstimate:
    """:func:`estimate_rig` over two folders of one rig's pairs, matched by file stem."""
    matched = match_folders(ir, vis)
    return estimate_rig(matched.pairs, mode=mode, **options)


def write_rig(path: str | os.PathLike, rig: RigEstimate, overwrite: bool = False) -> Path:
    """The rig's transform file (what ``contrafuse fuse --transform`` reads), with a ``rig`` summary."""
    return rig.registration.save(path, overwrite=overwrite, extra={"rig": rig.summary()})


def _consensus(found: list[tuple[str, Registration]], failed: list[tuple[str, str]], mode: str) -> RigEstimate:
    first = found[0][1]
    corners = _corners(first.moving_shape)
    placed = np.stack([registration.map_points(corners) for _, registration in found])  # (pairs, 4, 2)
    centre = np.median(placed, axis=0)
    keep = _inliers(placed, centre)
    for _ in range(2):
        centre = placed[keep].mean(axis=0)
        keep = _inliers(placed, centre)
    if keep.sum() < MIN_RIG_PAIRS:
        raise RigError(f"the pairs do not agree: {int(keep.sum())} of {len(found)} estimates lie near their consensus")
    centre = placed[keep].mean(axis=0)
    matrix = _fit(corners, centre, mode)
    distances = _distances(placed, _points(matrix, corners))
    confidences = {name: registration.confidence for name, registration in found}
    used = [(name, float(d)) for (name, _), d, k in zip(found, distances, keep) if k]
    outliers = [(name, float(d)) for (name, _), d, k in zip(found, distances, keep) if not k]
    confidence = float(np.median([confidences[name] for name, _ in used]))
    registration = Registration(matrix, mode, first.direction, first.moving_shape, first.fixed_shape, confidence)
    return RigEstimate(registration, used, outliers, failed, confidences)


def _inliers(placed: np.ndarray, centre: np.ndarray) -> np.ndarray:
    distances = _distances(placed, centre)
    return distances <= max(OUTLIER_MIN_PX, OUTLIER_FACTOR * float(np.median(distances)))


def _distances(placed: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Mean corner distance of each estimate from ``centre``."""
    return np.linalg.norm(placed - centre[None], axis=2).mean(axis=1)


def _corners(shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64)


def _points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = np.c_[points, np.ones(len(points))] @ matrix.T
    return mapped[:, :2] / mapped[:, 2:3]


def _fit(source: np.ndarray, target: np.ndarray, mode: str) -> np.ndarray:
    """The ``mode`` transform taking the four ``source`` points closest to ``target`` (least squares)."""
    matrix = np.eye(3)
    if mode == "translation":
        matrix[:2, 2] = (target - source).mean(axis=0)
    elif mode == "affine":
        design = np.c_[source, np.ones(len(source))]
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        matrix[:2] = solution.T
    else:
        matrix = cv2.getPerspectiveTransform(source.astype(np.float32), target.astype(np.float32)).astype(np.float64)
    return matrix / matrix[2, 2]
