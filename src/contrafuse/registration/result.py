"""The result of registering a pair: a 3x3 matrix between two pixel grids, kept with what it means.

Coordinates are pixel coordinates with the origin at the centre of the top-left pixel: pixel
``(column x, row y)`` has its centre at ``(x, y)``. This is OpenCV's convention, so the matrix can be
handed to ``cv2.warpPerspective`` as it is.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ContrafuseError
from ..atomic import write_text

MODES = ("none", "translation", "affine", "homography")
DIRECTIONS = ("ir_to_vis", "vis_to_ir")
DIRECTION_CHOICES = tuple(d.replace("_", "-") for d in DIRECTIONS)  # the command line's spelling
FORMAT = "contrafuse.registration"
FORMAT_VERSION = 1


def normalize_direction(direction: str) -> str:
    """``ir_to_vis`` / ``vis_to_ir``; the CLI spellings ``ir-to-vis`` / ``vis-to-ir`` are accepted."""
    value = direction.replace("-", "_").lower()
    if value not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    return value


def roles(direction: str) -> tuple[str, str]:
    """``(moving, fixed)`` roles of a direction: ``("ir", "vis")`` for ``ir_to_vis``."""
    return ("ir", "vis") if normalize_direction(direction) == "ir_to_vis" else ("vis", "ir")


@dataclass(frozen=True)
class Registration:
    """Where the moving image lies in the fixed image's frame.

    Attributes:
        matrix: ``(3, 3)`` float64 homography mapping a *moving*-image pixel ``(x, y, 1)`` to
            *fixed*-image pixel coordinates (homogeneous; divide by the third component). For
            ``translation`` and ``affine`` the last row is ``[0, 0, 1]``.
        mode: ``none``, ``translation``, ``affine`` or ``homography`` (the motion model fitted).
        direction: ``ir_to_vis`` (the infrared image is moving, the visible image fixed) or
            ``vis_to_ir``.
        moving_shape, fixed_shape: ``(height, width)`` of the two images.
        confidence: in ``[0, 1]``: the correlation of the two images' gradient-orientation
            features after alignment, over their overlap (see ``docs/registration.md``); ``1``
            would be identical structure, ``0`` none.
    """

    matrix: np.ndarray
    mode: str
    direction: str
    moving_shape: tuple[int, int]
    fixed_shape: tuple[int, int]
    confidence: float

    def __post_init__(self) -> None:
        matrix = np.asarray(self.matrix, dtype=np.float64)
        if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
            raise ValueError(f"matrix must be a finite 3x3 array, got {matrix!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        object.__setattr__(self, "matrix", matrix / matrix[2, 2])
        object.__setattr__(self, "direction", normalize_direction(self.direction))
        object.__setattr__(self, "moving_shape", _shape(self.moving_shape))
        object.__setattr__(self, "fixed_shape", _shape(self.fixed_shape))
        object.__setattr__(self, "confidence", float(self.confidence))

    @property
    def moving_role(self) -> str:
        """``"ir"`` or ``"vis"``: which image of the pair is resampled."""
        return roles(self.direction)[0]

    @property
    def fixed_role(self) -> str:
        """``"vis"`` or ``"ir"``: the image whose frame (size, resolution) the result takes."""
        return roles(self.direction)[1]

    def map_points(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` moving-image pixel coordinates ``(x, y)`` to fixed-image coordinates."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        mapped = np.c_[points, np.ones(len(points))] @ self.matrix.T
        return mapped[:, :2] / mapped[:, 2:3]

    def warp(self, image: np.ndarray) -> np.ndarray:
        """Resample the moving image into the fixed frame.

        Args:
            image: the moving image, ``(H, W)`` gray or ``(H, W, C)``, ``uint8``/``uint16``/float,
                with ``(H, W) == moving_shape``.

        Returns:
            ``fixed_shape`` (plus the channels of ``image``), same dtype, bilinear; fixed-frame
            pixels the moving image does not cover are 0 (see :meth:`coverage`).
        """
        image = np.asarray(image)
        if image.shape[:2] != self.moving_shape:
            raise ValueError(
                f"the {self.moving_role} image is {image.shape[1]}x{image.shape[0]}, but this registration "
                f"expects {self.moving_shape[1]}x{self.moving_shape[0]} (width x height)"
            )
        source, matrix = _prefilter(image, self.matrix)
        height, width = self.fixed_shape
        warped = cv2.warpPerspective(source, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return warped.reshape((height, width, *image.shape[2:]))

    def coverage(self) -> np.ndarray:
        """``fixed_shape`` bool mask: True where the warped moving image has content."""
        ones = np.ones(self.moving_shape, np.uint8)
        height, width = self.fixed_shape
        return cv2.warpPerspective(ones, self.matrix, (width, height), flags=cv2.INTER_NEAREST) > 0

    def overlap(self) -> float:
        """Fraction of the fixed image covered by the warped moving image, in ``[0, 1]``."""
        return float(self.coverage().mean())

    # -- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The JSON document as a dict (see :meth:`to_json`)."""
        moving, fixed = roles(self.direction)
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "mode": self.mode,
            "direction": self.direction,
            "matrix": self.matrix.tolist(),
            "matrix_maps": f"{moving} pixel (x, y, 1) -> {fixed} pixel; pixel centres at integer coordinates",
            "moving": {"role": moving, "width": self.moving_shape[1], "height": self.moving_shape[0]},
            "fixed": {"role": fixed, "width": self.fixed_shape[1], "height": self.fixed_shape[0]},
            "confidence": round(self.confidence, 6),
        }

    def to_json(self, extra: dict | None = None) -> str:
        """A small JSON document: format, version, mode, direction, matrix, both sizes, confidence,
        and ``extra`` keys after them (e.g. how a rig's transform was made; readers ignore them)."""
        text = json.dumps({**self.to_dict(), **(extra or {})}, indent=1)
        # one line per matrix row and per size: arrays of plain numbers are written flat
        return re.sub(r"\[\s+([^\[\]{}]+?)\s+\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "registration JSON") -> "Registration":
        """Parse :meth:`to_json` output; ``source`` names the file in error messages."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContrafuseError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ContrafuseError(f"{source}: not a {FORMAT} document")
        if doc.get("version") != FORMAT_VERSION:
            raise ContrafuseError(f"{source}: unsupported version {doc.get('version')!r} (this contrafuse reads {FORMAT_VERSION})")
        try:
            return cls(
                matrix=np.array(doc["matrix"], dtype=np.float64),
                mode=doc["mode"],
                direction=doc["direction"],
                moving_shape=(doc["moving"]["height"], doc["moving"]["width"]),
                fixed_shape=(doc["fixed"]["height"], doc["fixed"]["width"]),
                confidence=doc["confidence"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContrafuseError(f"{source}: malformed registration ({type(exc).__name__}: {exc})") from None

    def save(self, path: str | os.PathLike, overwrite: bool = False, extra: dict | None = None) -> Path:
        """Write :meth:`to_json` atomically; an existing file is kept unless ``overwrite``."""
        return write_text(Path(path), self.to_json(extra), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Registration":
        """Read a file written by :meth:`save`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ContrafuseError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return cls.from_json(text, source=str(path))


def _shape(value) -> tuple[int, int]:
    height, width = (int(v) for v in value)
    if height < 1 or width < 1:
        raise ValueError(f"image shape must be positive (height, width), got {value!r}")
    return height, width


def _prefilter(image: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrink the source first (area averaging) when the warp reduces it by more than 1.5x.

    Bilinear warping alone would alias a strongly reduced image; the matrix is composed with
    the shrink so the result lands in the same place.
    """
    linear = matrix[:2, :2] / matrix[2, 2]
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    if scale >= 1 / 1.5 or min(image.shape[:2]) < 4:
        return image, matrix
    height, width = image.shape[:2]
    new_w, new_h = max(2, round(width * scale)), max(2, round(height * scale))
    small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return small, matrix @ np.linalg.inv(resize_matrix((height, width), (new_h, new_w)))


def resize_matrix(source_shape: tuple[int, int], target_shape: tuple[int, int]) -> np.ndarray:
    """The 3x3 map from pixel coordinates of an image to those of its resized copy.

    ``cv2.resize`` aligns pixel *areas*, so with pixel centres at integer coordinates the map is
    ``x' = (x + 0.5) * s - 0.5``, not ``x * s`` (the difference is half a pixel per octave).
    """
    sy = target_shape[0] / source_shape[0]
    sx = target_shape[1] / source_shape[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
