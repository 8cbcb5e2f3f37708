"""Statistics of the fused image and pixel-wise comparisons: SD, SF, AG, CC, SCD, MSE, PSNR.

Every function takes a :class:`FusionImages` (gray 0..255 float64) and a convention name.
"""
from __future__ import annotations

import numpy as np

from ._common import FusionImages, warn_fallback


def standard_deviation(images: FusionImages, convention: str) -> float:
    """SD: population standard deviation of F in 0..255 (both conventions)."""
    return float(np.std(images.f))


def spatial_frequency(images: FusionImages, convention: str) -> float:
    """SF = sqrt(mean(row diff^2) + mean(col diff^2)); 0..255 (cddfuse) or [0, 1] (matlab)."""
    f = images.f
    value = float(np.sqrt(np.mean(np.diff(f, axis=1) ** 2) + np.mean(np.diff(f, axis=0) ** 2)))
    return value / 255.0 if convention == "matlab" else value


def central_gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Gx, Gy) like ``np.gradient``/MATLAB ``gradient``: central inside, one-sided at borders."""
    gy, gx = np.gradient(image)
    return gx, gy


def average_gradient(images: FusionImages, convention: str) -> float:
    """AG: sum of sqrt((Gx^2 + Gy^2) / 2) over H*W (cddfuse) or over (H-1)(W-1) (matlab)."""
    gx, gy = images.cached("np_gradient_f", lambda: central_gradients(images.f))
    total = float(np.sum(np.sqrt((gx * gx + gy * gy) / 2.0)))
    h, w = images.f.shape
    return total / ((h - 1) * (w - 1)) if convention == "matlab" else total / (h * w)


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation of two arrays; ``None`` when either has zero variance."""
    xc = x - x.mean()
    yc = y - y.mean()
    denom = np.sqrt(np.sum(xc * xc) * np.sum(yc * yc))
    if denom == 0:
        return None
    return float(np.sum(xc * yc) / denom)


def _correlation_or_zero(metric: str, x: np.ndarray, y: np.ndarray, what: str) -> float:
    r = pearson(x, y)
    if r is None:
        warn_fallback(metric, f"{what} has zero variance, correlation undefined", 0.0)
        return 0.0
    return r


def correlation_coefficient(images: FusionImages, convention: str) -> float:
    """CC = (r(A, F) + r(B, F)) / 2; a correlation with a constant image counts as 0."""
    r_af = _correlation_or_zero("CC", images.a, images.f, "ir or fused")
    r_bf = _correlation_or_zero("CC", images.b, images.f, "vis or fused")
    return (r_af + r_bf) / 2.0


def sum_of_correlations_of_differences(images: FusionImages, convention: str) -> float:
    """SCD = r(F - B, A) + r(F - A, B); a correlation with a constant term counts as 0."""
    f, a, b = images.f, images.a, images.b
    first = _correlation_or_zero("SCD", a, f - b, "ir or fused-vis")
    second = _correlation_or_zero("SCD", b, f - a, "vis or fused-ir")
    return first + second


def mean_squared_error_255(images: FusionImages) -> float:
    """(MSE(A, F) + MSE(B, F)) / 2 with pixels in 0..255."""
    def compute() -> float:
        f = images.f
        return float((np.mean((images.a - f) ** 2) + np.mean((images.b - f) ** 2)) / 2.0)

    return images.cached("mse_255", compute)


def mean_squared_error(images: FusionImages, convention: str) -> float:
    """MSE: mean over the sources, in 0..255 units (cddfuse) or on [0, 1] images (matlab)."""
    mse = mean_squared_error_255(images)
    return mse / 255.0**2 if convention == "matlab" else mse


def peak_signal_to_noise_ratio(images: FusionImages, convention: str) -> float:
    """PSNR in dB: 10 log10(max(F)^2 / MSE_255) (cddfuse) or 20 log10(255 / sqrt(MSE_01)) (matlab).

    ``inf`` when F equals both sources (MSE = 0); cddfuse gives ``-inf`` for an all-black F.
    """
    mse = mean_squared_error_255(images)
    if mse == 0:
        warn_fallback("PSNR", "fused image equals both sources (MSE = 0)", float("inf"))
        return float("inf")
    if convention == "matlab":
        return float(20.0 * np.log10(255.0 / np.sqrt(mse / 255.0**2)))
    peak = float(images.f.max())
    if peak == 0:
        warn_fallback("PSNR", "fused image is all zero, max(F) = 0", float("-inf"))
        return float("-inf")
    return float(10.0 * np.log10(peak**2 / mse))
