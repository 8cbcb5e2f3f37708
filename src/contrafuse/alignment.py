"""The pipeline's registration step: find or load the transform of a pair and apply it to the
pair's luma and colour before the model sees them.

Registration itself (:mod:`contrafuse.registration`) knows nothing of networks; this module is
the glue the fusing pipeline calls. A pair is aligned in one of two ways:

* ``align`` = ``translation``, ``affine`` or ``homography``: estimated for this pair (folders:
  per pair; videos: on the first frame, or every N frames);
* ``transform``: a saved :class:`~contrafuse.registration.Registration` (the JSON file
  ``contrafuse align`` writes), applied as it is.

A pair that cannot be registered raises :class:`~contrafuse.errors.RegistrationError` naming
the pair: it is never fused unaligned.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ContrafuseError, PairError
from .registration import DIRECTIONS, MODES, Registration
from .registration.result import normalize_direction


class AlignOptionError(ContrafuseError, ValueError):
    """Alignment options that contradict each other or cannot be used."""


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`contrafuse.registration.MODES` (``none``: the pair is fused as it is)."""
    value = str(mode).lower()
    if value not in MODES:
        raise AlignOptionError(f"align must be one of {', '.join(MODES)}, got {mode!r}")
    return value


def check_confidence_threshold(value: float, name: str) -> float:
    """``value`` as a float if it is a confidence threshold in ``[0, 1]``; ``name`` is the option's, for the error."""
    threshold = float(value)
    if not 0.0 <= threshold <= 1.0:
        raise AlignOptionError(f"{name} must be in [0, 1], got {value!r}")
    return threshold


def as_registration(transform: Registration | str | os.PathLike | None) -> Registration | None:
    """A :class:`Registration`, or one read from a JSON file written by ``contrafuse align``."""
    if transform is None or isinstance(transform, Registration):
        return transform
    if not isinstance(transform, (str, os.PathLike)):
        raise AlignOptionError(f"transform must be a Registration or a JSON file, got {type(transform).__name__}")
    path = Path(transform)
    if not path.is_file():
        raise ContrafuseError(f"{path}: transform file not found")
    return Registration.load(path)


def resolve_direction(direction: str | None, transform: Registration | None) -> str:
    """The direction a run warps in: the given one, else the transform's, else ``ir_to_vis``.

    A direction that contradicts the saved transform's is an error.
    """
    if direction is None:
        return transform.direction if transform is not None else DIRECTIONS[0]
    try:
        value = normalize_direction(str(direction))
    except ValueError as exc:
        raise AlignOptionError(str(exc)) from None
    if transform is not None and transform.direction != value:
        raise AlignOptionError(f"direction {value} contradicts the saved transform, which maps {transform.direction}")
    return value


def check_fits(registration: Registration, *, ir_shape: tuple[int, int], vis_shape: tuple[int, int], name: str) -> None:
    """Raise :class:`~contrafuse.errors.PairError` naming the pair when the transform was made for
    images of other sizes."""
    shapes = {"ir": tuple(ir_shape[:2]), "vis": tuple(vis_shape[:2])}
    for role, expected in ((registration.moving_role, registration.moving_shape),
                           (registration.fixed_role, registration.fixed_shape)):
        if shapes[role] != expected:
            height, width = shapes[role]
            raise PairError(f"{name}: the transform expects a {expected[1]}x{expected[0]} {role} image, this one is "
                            f"{width}x{height} (width x height)")


def warp_float(registration: Registration, values: np.ndarray) -> np.ndarray:
    """Resample float ``(H, W)`` values (a luma in [0, 1]) into the fixed frame; float64."""
    return registration.warp(np.ascontiguousarray(values, dtype=np.float32)).astype(np.float64)


__all__ = ["AlignOptionError", "as_registration", "check_confidence_threshold", "check_fits", "check_mode", "resolve_direction",
           "warp_float"]
