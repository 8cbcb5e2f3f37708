"""Statistics of the fused image and pixel-wise comparisons: SD, SF, AG, CC, SCD, MSE, PSNR.

Every function takes a :class:`FusionImages` (gray 0..255 float64) and a convention name.
Formulas use the literature's letters: F = fused, A = ir, B = vis.
"""
from __future__ import annotations

import math

import numpy as np

from ._common import IMAGE_ROLES, FusionImages, warn_fallback


def standard_deviation(images: FusionImages, convention: str) -> float:
    """SD: population standard deviation of F in 0..255 (both conventions)."""
    return float(np.std(images.fused))


def spatial_frequency(images: FusionImages, convention: str) -> float:
    """SF = sqrt(mean(row diff^2) + mean(col diff^2)); 0..255 (cddfuse) or [0, 1] (matlab)."""
    fused = images.fused
    value = float(np.sqrt(np.mean(np.diff(fused, axis=1) ** 2) + np.mean(np.diff(fused, axis=0) ** 2)))
    return value / 255.0 if convention == "matlab" else value


def central_gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Gx, Gy) like ``np.gradient``/MATLAB ``gradient``: central inside, one-sided at borders."""
    gy, gx = np.gradient(image)
    return gx, gy


def average_gradient(images: FusionImages, convention: str) -> float:
    """AG: sum of sqrt((Gx^2 + Gy^2) / 2) over H*W (cddfuse) or over (H-1)(W-1) (matlab)."""
    gx, gy = central_gradients(images.fused)
    # sqrt((gx^2 + gy^2) / 2) in place: same operations, half the memory
    gx *= gx
    gy *= gy
    gx += gy
    gx /= 2.0
    total = float(np.sum(np.sqrt(gx, out=gx)))
    h, w = images.fused.shape
    return total / ((h - 1) * (w - 1)) if convention == "matlab" else total / (h * w)


class Comoments:
    """Exact N^2-scaled (co)variances of the integer-valued images fused, ir and vis.

    ``C(x, y) = N * sum(x y) - sum(x) sum(y)`` from float64 dot products, which are exact for
    integer pixels (every partial sum is an integer below 2^53), held as Python integers. CC
    and SCD then need six dot products instead of centred copies, and a zero variance (e.g. of
    F - B when F equals B) is detected exactly. ``einsum`` rather than ``np.dot``: a BLAS dot
    may spin up threads, which costs more than it saves at this size.
    """

    def __init__(self, images: FusionImages):
        flat = {role: images.image(role).ravel() for role in IMAGE_ROLES}
        self.n = images.fused.size
        self.sums = {role: int(v.sum()) for role, v in flat.items()}
        self.dots: dict[tuple[str, str], int] = {}
        for i, x in enumerate(IMAGE_ROLES):
            for y in IMAGE_ROLES[i:]:
                self.dots[x, y] = self.dots[y, x] = int(np.einsum("i,i->", flat[x], flat[y]))

    def cov(self, x: str, y: str) -> int:
        """N^2 cov(x, y) of the images named ``x`` and ``y`` ("fused", "ir" or "vis")."""
        return self.n * self.dots[x, y] - self.sums[x] * self.sums[y]

    def cov_of_difference(self, x: str, minuend: str, subtrahend: str) -> tuple[int, int]:
        """(N^2 cov(x, m - s), N^2 var(m - s)) by bilinearity."""
        cross = self.cov(x, minuend) - self.cov(x, subtrahend)
        var = self.cov(minuend, minuend) - 2 * self.cov(minuend, subtrahend) + self.cov(subtrahend, subtrahend)
        return cross, var


def _comoments(images: FusionImages) -> Comoments:
    return images.cached("comoments", lambda: Comoments(images))


def _correlation_from_comoments(metric: str, cov_xy: int, var_x: int, var_y: int, what: str) -> float:
    if var_x == 0 or var_y == 0:
        warn_fallback(metric, f"{what} has zero variance, correlation undefined", 0.0)
        return 0.0
    return float(cov_xy) / math.sqrt(float(var_x) * float(var_y))


def correlation_coefficient(images: FusionImages, convention: str) -> float:
    """CC = (r(A, F) + r(B, F)) / 2 (A = ir, B = vis, F = fused); a constant image counts as 0."""
    m = _comoments(images)
    r_ir = _correlation_from_comoments("CC", m.cov("ir", "fused"), m.cov("ir", "ir"), m.cov("fused", "fused"), "ir or fused")
    r_vis = _correlation_from_comoments("CC", m.cov("vis", "fused"), m.cov("vis", "vis"), m.cov("fused", "fused"), "vis or fused")
    return (r_ir + r_vis) / 2.0


def scd_terms(images: FusionImages) -> tuple[float, float]:
    """The two terms of SCD: (r(fused - vis, ir), r(fused - ir, vis)), each in [-1, 1].

    The first says how much of the IR image is in the fused image beyond what the VIS image
    explains, the second the same for VIS; a correlation with a constant term counts as 0.
    """
    m = _comoments(images)
    cross_ir, var_fused_vis = m.cov_of_difference("ir", "fused", "vis")
    cross_vis, var_fused_ir = m.cov_of_difference("vis", "fused", "ir")
    ir_term = _correlation_from_comoments("SCD", cross_ir, m.cov("ir", "ir"), var_fused_vis, "ir or fused-vis")
    vis_term = _correlation_from_comoments("SCD", cross_vis, m.cov("vis", "vis"), var_fused_ir, "vis or fused-ir")
    return ir_term, vis_term


def sum_of_correlations_of_differences(images: FusionImages, convention: str) -> float:
    """SCD = r(F - B, A) + r(F - A, B) (A = ir, B = vis), in [-2, 2]; see :func:`scd_terms`."""
    ir_term, vis_term = scd_terms(images)
    return ir_term + vis_term


def mean_squared_error_255(images: FusionImages) -> float:
    """(MSE(A, F) + MSE(B, F)) / 2 with pixels in 0..255."""
    def compute() -> float:
        fused = images.fused
        return float((np.mean((images.ir - fused) ** 2) + np.mean((images.vis - fused) ** 2)) / 2.0)

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
    peak = float(images.fused.max())
    if peak == 0:
        warn_fallback("PSNR", "fused image is all zero, max(F) = 0", float("-inf"))
        return float("-inf")
    return float(10.0 * np.log10(peak**2 / mse))
