"""Full-range BT.601 (JPEG) YCbCr, the colour space the fusion field fuses in.

All functions take float arrays in any scale (0-1 or 0-255); chroma is returned *centred*
(the 0.5 or 128 offset removed), which makes the round trip independent of the scale.

    Y  =  0.299 R + 0.587 G + 0.114 B
    Cb = -0.168736 R - 0.331264 G + 0.5 B
    Cr =  0.5 R - 0.418688 G - 0.081312 B
"""
from __future__ import annotations

import numpy as np


def luma01(pixels: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Luma of integer pixels on [0, 1]: gray ``(H, W)`` or RGB ``(H, W, 3)``, ``uint8``/``uint16``.

    The value is divided by the dtype's full scale (255 or 65535); the result has ``dtype``.
    """
    full_scale = float(np.iinfo(pixels.dtype).max)
    values = rgb_to_luma(pixels) if pixels.ndim == 3 else pixels.astype(np.float64)
    return (values / full_scale).astype(dtype, copy=False)


def pixels01(pixels: np.ndarray) -> np.ndarray:
    """Integer pixels as float64 on [0, 1]: every channel divided by the dtype's full scale."""
    return pixels.astype(np.float64) / float(np.iinfo(pixels.dtype).max)


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """Luma of an ``(H, W, 3)`` RGB array as float64 ``(H, W)``, same scale as the input."""
    _check_rgb(rgb)
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def rgb_to_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``(H, W, 3)`` RGB into float64 luma Y and centred chroma Cb, Cr."""
    _check_rgb(rgb)
    y = rgb_to_luma(rgb)
    rgb = rgb.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    return y, cb, cr


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr` (centred chroma); float64 ``(H, W, 3)``, unclipped."""
    y = np.asarray(y, dtype=np.float64)
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return np.stack([r, g, b], axis=-1)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")


def ycbcr_to_rgb_in_gamut(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Like :func:`ycbcr_to_rgb` on [0, 1] values, but in range without clipping channels.

    Luma is clipped to [0, 1]; then, per pixel, the chroma is scaled down by the largest factor
    in [0, 1] that keeps all three channels in [0, 1]. Luma and hue are kept exactly (only the
    saturation of out-of-gamut colours drops), where clipping each channel would shift the hue.
    """
    y = np.clip(np.asarray(y, dtype=np.float64), 0.0, 1.0)
    offset = ycbcr_to_rgb(np.zeros_like(y), cb, cr)  # each channel's chroma contribution
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(offset > 0, (1.0 - y[..., None]) / offset, np.where(offset < 0, -y[..., None] / offset, np.inf))
    scale = np.clip(room.min(axis=-1, initial=np.inf), 0.0, 1.0)
    return y[..., None] + scale[..., None] * offset
