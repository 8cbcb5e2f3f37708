"""Gaussian windows and the separable 'valid' filtering the metrics apply with them.

NumPy only (base layer): the metrics use these taps in float32, the losses may turn them
into tensors. A 2-D Gaussian window is ``np.outer(taps, taps)`` of the 1-D taps.
"""
from __future__ import annotations

import numpy as np


def gaussian_taps(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps: float64 ``(size,)``, centred on ``(size - 1) / 2``, sum 1.

    ``np.outer(taps, taps)`` is MATLAB ``fspecial('gaussian', size, sigma)`` (and the window
    of pytorch_ssim-style SSIM for size 11, sigma 1.5). Even sizes centre between two taps.
    """
    if size < 1 or sigma <= 0:
        raise ValueError(f"gaussian_taps: need size >= 1 and sigma > 0, got size {size}, sigma {sigma}")
    x = np.arange(size) - (size - 1) / 2.0
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def correlate_valid_1d(image: np.ndarray, taps: np.ndarray, axis: int, step: int = 1) -> np.ndarray:
    """'valid' correlation with symmetric ``taps`` along ``axis``, keeping every ``step``-th output.

    Output length along ``axis``: ``ceil((n - len(taps) + 1) / step)``; computed in the
    image's dtype. Written as sums of shifted slices, taps paired by symmetry: in float32
    this is several times faster than ``scipy.ndimage.correlate1d`` for short windows.
    """
    size = len(taps)
    count = image.shape[axis] - size + 1

    def shifted(offset: int) -> np.ndarray:
        index = [slice(None)] * image.ndim
        index[axis] = slice(offset, offset + count, step)
        return image[tuple(index)]

    centre = size // 2
    out = shifted(centre) * taps[centre]
    pair = np.empty_like(out)
    for k in range(centre):
        np.add(shifted(k), shifted(size - 1 - k), out=pair)
        pair *= taps[k]
        out += pair
    return out


def filter_valid(image: np.ndarray, taps: np.ndarray, step: int = 1) -> np.ndarray:
    """Separable 'valid' correlation of ``(H, W)`` ``image`` with ``outer(taps, taps)``.

    Shrinks each side by ``len(taps) - 1``; ``step=2`` returns ``filter_valid(image, taps)[::2, ::2]``
    without computing the rest. ``taps`` must be symmetric (any Gaussian window is).
    """
    return correlate_valid_1d(correlate_valid_1d(image, taps, 0, step), taps, 1, step)


__all__ = ["correlate_valid_1d", "filter_valid", "gaussian_taps"]
