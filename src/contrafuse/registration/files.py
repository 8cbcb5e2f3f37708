"""Registering files and folders: read, estimate, warp, write the warped image and its transform."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ContrafuseError, ImageWriteError
from ..io import match_folders, read_image, write_image
from ..thermal import for_display
from .method import DEFAULT_MIN_CONFIDENCE, estimate
from .result import Registration, roles

ImageLike = np.ndarray | str | os.PathLike


@dataclass
class Aligned:
    """One pair written by :func:`align_folders` / :func:`write_alignment`."""

    stem: str
    image: Path
    transform: Path
    confidence: float


@dataclass
class AlignReport:
    """What a folder run did: pairs written, failures ``(stem, message)``, files without partner."""

    written: list[Aligned] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def align_pair(
    *,
    ir: ImageLike,
    vis: ImageLike,
    mode: str = "affine",
    direction: str = "ir_to_vis",
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    name: str | None = None,
    **options,
) -> tuple[np.ndarray, Registration]:
    """Register a pair and warp its moving image into the fixed image's frame.

    Args:
        ir, vis: arrays (see :func:`estimate`) or image files.
        mode, direction, min_confidence: as for :func:`estimate`; ``options`` go to it too.
        name: how errors name the pair (default: the file names, or ``"pair"`` for arrays).

    Returns:
        ``(warped, registration)``: the moving image (``ir`` for ``ir_to_vis``) resampled to the
        fixed image's size, dtype and channels kept (a float infrared image, e.g. temperatures,
        becomes its ``auto``-windowed 8-bit luma, see :mod:`contrafuse.thermal`), and the
        :class:`Registration`.

    Raises:
        RegistrationError: the pair cannot be registered reliably.
        ImageReadError: a file cannot be read.
    """
    ir_image, vis_image = read_pair(ir=ir, vis=vis)
    label = name if name is not None else _pair_name(ir, vis)
    registration = estimate(ir=ir_image, vis=vis_image, mode=mode, direction=direction,
                            min_confidence=min_confidence, name=label, **options)
    moving = ir_image if registration.moving_role == "ir" else vis_image
    return registration.warp(moving), registration


def read_pair(*, ir: ImageLike, vis: ImageLike) -> tuple[np.ndarray, np.ndarray]:
    """The two images as registration takes them: arrays or files read; a float infrared image
    (radiometric temperatures) as its ``auto``-windowed 8-bit luma."""
    ir_image, vis_image = _load(ir), _load(vis)
    if ir_image.dtype.kind == "f":
        ir_image = for_display(ir_image, "auto")
    return ir_image, vis_image


def write_alignment(out_dir: str | os.PathLike, stem: str, warped: np.ndarray, registration: Registration,
                    overwrite: bool = False) -> Aligned:
    """Write ``out_dir/<stem>.png`` (the warped image) and ``out_dir/<stem>.json`` (the transform).

    Both targets are checked before anything is written, so an existing file never leaves a
    half-written pair behind; each file is written atomically and never replaced unless
    ``overwrite``.
    """
    out_dir = Path(out_dir)
    image_path, transform_path = out_dir / f"{stem}.png", out_dir / f"{stem}.json"
    if not overwrite:
        for path in (image_path, transform_path):
            if path.exists():
                raise ImageWriteError(path, "already exists (pass overwrite=True / --overwrite to replace it)")
    write_image(image_path, warped, overwrite=overwrite)
    registration.save(transform_path, overwrite=overwrite)
    return Aligned(stem, image_path, transform_path, registration.confidence)


def align_folders(
    *,
    ir: str | os.PathLike,
    vis: str | os.PathLike,
    out: str | os.PathLike,
    mode: str = "affine",
    direction: str = "ir_to_vis",
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    overwrite: bool = False,
    progress: bool = False,
    **options,
) -> AlignReport:
    """Register every pair of two folders (matched by file stem) into ``out``.

    Writes ``out/<stem>.png`` and ``out/<stem>.json`` per pair (see :func:`write_alignment`). A
    pair that cannot be read, registered or written is recorded in the report with its name and
    the others still complete. ``progress`` shows a bar on stderr when it is a terminal.
    """
    from tqdm import tqdm

    matched = match_folders(ir, vis)
    report = AlignReport(unmatched=matched.only_in_first + matched.only_in_second)
    bar = tqdm(matched.pairs, desc="aligning", unit="pair", file=sys.stderr, disable=None if progress else True)
    for stem, ir_path, vis_path in bar:
        try:
            warped, registration = align_pair(ir=ir_path, vis=vis_path, mode=mode, direction=direction,
                                              min_confidence=min_confidence, name=_pair_name(ir_path, vis_path), **options)
            report.written.append(write_alignment(out, stem, warped, registration, overwrite))
        except ContrafuseError as exc:
            report.failed.append((stem, str(exc)))
    return report


def output_stem(*, ir: str | os.PathLike, vis: str | os.PathLike, direction: str) -> str:
    """The stem outputs of one pair are named after: the moving image's file stem."""
    return Path(ir if roles(direction)[0] == "ir" else vis).stem


def _load(image: ImageLike) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else read_image(image)


def _pair_name(ir: ImageLike, vis: ImageLike) -> str:
    if isinstance(ir, np.ndarray) or isinstance(vis, np.ndarray):
        return "pair"
    return f"{ir} + {vis}"
