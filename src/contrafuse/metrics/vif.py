"""VIF: Sheikh-Bovik multiscale pixel-domain visual information fidelity, summed over sources.

This is ``vifp_mscale`` as used by the CDDFuse evaluator ("VIFF") and by Tang's MATLAB code
(both conventions agree): 4 scales, Gaussian window N = 2^(5-s)+1 with sigma N/5, sigma_n^2 = 2,
'valid' filtering and decimation by 2 between scales. The Gaussian window is separable, so it
is applied as two 1-D passes (about 20x faster than the 2-D ``convolve2d`` of the reference).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import FusionImages, warn_fallback

SIGMA_NSQ = 2.0
EPS = 1e-10
SCALES = 4


def gaussian_taps(size: int) -> np.ndarray:
    """Normalised 1-D taps whose outer product is MATLAB ``fspecial('gaussian', size, size/5)``."""
    sd = size / 5.0
    x = np.arange(size) - (size - 1) / 2.0
    taps = np.exp(-(x * x) / (2.0 * sd * sd))
    return (taps / taps.sum()).astype(np.float32)


def filter_valid(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of ``image`` with ``outer(taps, taps)``; shrinks by len-1."""
    radius = (len(taps) - 1) // 2
    rows = ndimage.correlate1d(image, taps, axis=0, mode="constant")[radius : image.shape[0] - radius]
    return ndimage.correlate1d(rows, taps, axis=1, mode="constant")[:, radius : image.shape[1] - radius]


def _information_terms(
    mu_r: np.ndarray, ref_sq: np.ndarray, mu_d: np.ndarray, sigma_d_sq: np.ndarray, cross: np.ndarray
) -> tuple[float, float]:
    """(numerator, denominator) sums of one scale for one reference, as in ``vifp_mscale``.

    The reference's sequence of masked assignments, folded into ``np.where`` in the same order.
    """
    sigma_r_sq = np.maximum(ref_sq - mu_r * mu_r, 0.0)
    sigma_rd = cross - mu_r * mu_d
    g = sigma_rd / (sigma_r_sq + EPS)
    sv_sq = sigma_d_sq - g * sigma_rd
    flat_ref = sigma_r_sq < EPS
    flat_dist = sigma_d_sq < EPS
    sv_sq = np.where(flat_ref, sigma_d_sq, sv_sq)
    sigma_r_sq = np.where(flat_ref, 0.0, sigma_r_sq)
    g = np.where(flat_ref | flat_dist, 0.0, g)
    sv_sq = np.where(flat_dist, 0.0, sv_sq)
    negative = g < 0
    sv_sq = np.where(negative, sigma_d_sq, sv_sq)
    g = np.maximum(g, 0.0)
    np.maximum(sv_sq, EPS, out=sv_sq)
    num = np.sum(np.log1p(g * g * sigma_r_sq / (sv_sq + SIGMA_NSQ))) / np.log(10.0)
    den = np.sum(np.log1p(sigma_r_sq / SIGMA_NSQ)) / np.log(10.0)
    return float(num), float(den)


def vif_per_source(refs: list[np.ndarray], dist: np.ndarray) -> list[float]:
    """vifp_mscale(ref, dist) for each reference; the distorted image's statistics are shared.

    Inputs are float64 ``(H, W)`` in 0..255; an image too small for the four scales (under
    about 41 pixels a side) raises ``ValueError``.
    """
    # VIF only uses variances and covariances, so shifting each image by its mean changes
    # nothing but keeps E[x^2] - E[x]^2 well conditioned enough for float32 filtering
    refs = [(r - r.mean()).astype(np.float32) for r in refs]
    dist = (dist - dist.mean()).astype(np.float32)
    num = [0.0] * len(refs)
    den = [0.0] * len(refs)
    for scale in range(1, SCALES + 1):
        taps = gaussian_taps(2 ** (SCALES - scale + 1) + 1)
        if scale > 1:
            refs = [filter_valid(r, taps)[::2, ::2] for r in refs]
            dist = filter_valid(dist, taps)[::2, ::2]
        if min(dist.shape) < len(taps):
            raise ValueError(f"VIF: image too small for scale {scale} (needs at least about 41x41 pixels)")
        mu_d = filter_valid(dist, taps)
        sigma_d_sq = np.maximum(filter_valid(dist * dist, taps) - mu_d * mu_d, np.float32(0.0))
        for i, ref in enumerate(refs):
            terms = _information_terms(
                filter_valid(ref, taps), filter_valid(ref * ref, taps), mu_d, sigma_d_sq, filter_valid(ref * dist, taps)
            )
            num[i] += terms[0]
            den[i] += terms[1]
    return [_ratio_or_one(n, d) for n, d in zip(num, den)]


def _ratio_or_one(num: float, den: float) -> float:
    if den == 0:
        # the reference code divides 0/0 here (constant source) and maps the NaN to 1.0
        warn_fallback("VIF", "a source image is constant (no information to preserve)", 1.0)
        return 1.0
    return num / den


def visual_information_fidelity(images: FusionImages, convention: str) -> float:
    """VIF = vifp(A, F) + vifp(B, F) (both conventions)."""
    return float(sum(vif_per_source([images.a, images.b], images.f)))
