"""Turning inputs (paths or arrays) into the gray 0-255 images every metric works on.

The conversion is the one of the CDDFuse evaluator (``cv2.imread`` -> float32 ->
``cv2.cvtColor(BGR2GRAY)`` -> ``np.round``): ``Y = 0.114 B + 0.587 G + 0.299 R`` evaluated in
float32 in that order, then rounded half-to-even. Tang's MATLAB ``rgb2gray`` rounds the same
BT.601 luma to uint8, so both conventions see the same integer image.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import PairError
from ..io import read_image

_B, _G, _R = np.float32(0.114), np.float32(0.587), np.float32(0.299)


def rgb_to_gray_cv2(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``(H, W, 3)`` RGB in float32 like OpenCV, rounded; float64 ``(H, W)``."""
    rgb = rgb.astype(np.float32)
    luma = rgb[..., 2] * _B + rgb[..., 1] * _G + rgb[..., 0] * _R
    return np.round(luma).astype(np.float64)


def to_gray(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Gray float64 ``(H, W)`` with integer values in 0..255 from a gray or RGB array.

    ``uint8`` is used as is; ``uint16`` is rescaled to 0..255 (``round(x / 257)``); float arrays
    must already hold values in 0..255 and are rounded like the reference's ``np.round``.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    if array.dtype == np.uint16:
        array = np.round(array / 257.0)
    elif array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name}: contains NaN or infinite values")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"{name}: float pixels must lie in 0..255, got {array.min():g}..{array.max():g}")
    elif array.dtype.kind not in "uib":
        raise ValueError(f"{name}: unsupported pixel type {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        return rgb_to_gray_cv2(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{name}: expected an (H, W) or (H, W, 3) image, got shape {array.shape}")
    return np.round(array.astype(np.float64))


def load_gray(source: str | os.PathLike | np.ndarray, name: str) -> np.ndarray:
    """Read a path (or take an array) and return the gray 0..255 float64 image.

    Raises:
        ImageReadError: the path is missing or not an image (message names the file).
    """
    if isinstance(source, (str, os.PathLike)):
        return to_gray(read_image(source), name=str(Path(source)))
    if isinstance(source, np.ndarray):
        return to_gray(source, name=name)
    raise TypeError(f"{name}: expected a path or a NumPy array, got {type(source).__name__}")


def load_triplet(
    fused: str | os.PathLike | np.ndarray, *, ir: str | os.PathLike | np.ndarray, vis: str | os.PathLike | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gray float64 ``(H, W)`` images (integers 0..255) of (fused, ir, vis), checked to have one shape.

    Raises:
        PairError: the three images do not share one ``(H, W)``; the message names them.
        ImageReadError: a file cannot be read.
    """
    labels = [_label(fused, "fused"), _label(ir, "ir"), _label(vis, "vis")]
    images = [load_gray(src, label) for src, label in zip((fused, ir, vis), labels)]
    shapes = [img.shape for img in images]
    if len(set(shapes)) != 1:
        detail = ", ".join(f"{label} {shape[0]}x{shape[1]}" for label, shape in zip(labels, shapes))
        raise PairError(f"size mismatch (H x W): {detail}")
    if min(shapes[0]) < 2:
        raise PairError(f"{labels[0]}: image of {shapes[0]} is too small; metrics need at least 2x2 pixels")
    return images[0], images[1], images[2]


def _label(source, role: str) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"{role} array"


__all__ = ["load_gray", "load_triplet", "rgb_to_gray_cv2", "to_gray"]
