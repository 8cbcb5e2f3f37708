"""Feature mutual information (Haghighat et al. 2011; fast-FMI, Haghighat & Razian 2014).

A vectorised transcription of Tang's ``analysis_fmi.m`` with 3x3 windows: in every window
the two feature patches are min-max normalised, read as PDFs over the 9 positions (MATLAB
column-major order), their joint PDF is built with Nelsen's method from the Frechet bounds, and
the normalised MI 2 I / (H_a + H_f) is averaged over the two sources and all windows.

Slow by nature (a 9x9 joint PDF per window and source): about 2-5 s per 450x620 image and
feature, hence not in the default metric set.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft, ndimage

from ._common import IMAGE_ROLES, FusionImages

WINDOW = 3
_CHUNK = 16384  # windows per vectorised batch (bounded memory: ~CHUNK*81 floats per array)


def window_vectors(feature: np.ndarray) -> np.ndarray:
    """All 3x3 'valid' windows as rows of 9 values in MATLAB column-major order."""
    windows = sliding_window_view(feature, (WINDOW, WINDOW))
    return windows.swapaxes(-1, -2).reshape(-1, WINDOW * WINDOW)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo = x.min(axis=1, keepdims=True)
    hi = x.max(axis=1, keepdims=True)
    span = hi - lo
    flat = span == 0
    return np.where(flat, 1.0, (x - lo) / np.where(flat, 1.0, span))


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    safe = np.where(p != 0, np.abs(p), 1.0)
    return -np.sum(p * np.log2(safe), axis=-1)


def _pdf_sd(pdf: np.ndarray) -> np.ndarray:
    idx = np.arange(1, pdf.shape[1] + 1, dtype=np.float64)
    mean = pdf @ idx
    return np.sqrt(np.maximum(pdf @ (idx * idx) - mean * mean, 0.0))


def normalised_fmi(src: np.ndarray, fus_raw: np.ndarray, fus_norm: np.ndarray) -> np.ndarray:
    """FMI of one source per window. Rows: windows; ``fus_norm`` is min-max normalised."""
    same = np.all(src == fus_raw, axis=1)
    a_pdf = _minmax(src)
    a_pdf /= a_pdf.sum(axis=1, keepdims=True)
    f_pdf = fus_norm / fus_norm.sum(axis=1, keepdims=True)
    a_cdf, f_cdf = np.cumsum(a_pdf, axis=1), np.cumsum(f_pdf, axis=1)

    a_c, f_c = a_pdf - a_pdf.mean(axis=1, keepdims=True), f_pdf - f_pdf.mean(axis=1, keepdims=True)
    cross = np.sum(a_c * f_c, axis=1)
    denom = np.sqrt(np.sum(a_c * a_c, axis=1) * np.sum(f_c * f_c, axis=1))
    corr = np.where(cross == 0, 0.0, cross / np.where(denom == 0, 1.0, denom))
    a_sd, f_sd = _pdf_sd(a_pdf), _pdf_sd(f_pdf)

    positive = corr >= 0
    fi, aj = f_cdf[:, :, None], a_cdf[:, None, :]
    # Frechet upper bound min(F, A) where corr >= 0, lower bound max(F + A - 1, 0) otherwise
    bound = np.where(positive[:, None, None], np.minimum(fi, aj), np.maximum(fi + aj - 1.0, 0.0))
    product = fi * aj
    cov_bound = np.sum(bound - product, axis=(1, 2))
    degenerate = (a_sd == 0) | (f_sd == 0) | (positive & (corr == 0))
    bound_corr = cov_bound / np.where(degenerate, 1.0, f_sd * a_sd)
    mix = np.where(degenerate | (bound_corr == 0), 0.0, corr / np.where(bound_corr == 0, 1.0, bound_corr))

    padded = np.zeros((bound.shape[0], bound.shape[1] + 1, bound.shape[2] + 1))
    padded[:, 1:, 1:] = bound
    bound_pdf = np.diff(np.diff(padded, axis=1), axis=2)
    joint = mix[:, None, None] * bound_pdf + (1.0 - mix[:, None, None]) * (f_pdf[:, :, None] * a_pdf[:, None, :])
    joint_entropy = _entropy_bits(joint.reshape(joint.shape[0], -1))

    h_a, h_f = _entropy_bits(a_pdf), _entropy_bits(f_pdf)
    mi = h_a + h_f - joint_entropy
    total = h_a + h_f
    value = np.where((mi == 0) | (total == 0), 0.0, 2.0 * mi / np.where(total == 0, 1.0, total))
    return np.where(same, 1.0, value)


def fmi_of_features(fused: np.ndarray, *, ir: np.ndarray, vis: np.ndarray) -> float:
    """Mean over 3x3 windows of (FMI(ir, fused) + FMI(vis, fused)) / 2, in [0, 1].

    Inputs: the three feature images (pixels, DCT or wavelet coefficients), float ``(H, W)``.
    The order matters through a MATLAB quirk: the ir pass may leave the fused patch
    normalised for the vis pass.
    """
    v_ir, v_vis, v_fused = window_vectors(ir), window_vectors(vis), window_vectors(fused)
    total = 0.0
    for start in range(0, v_ir.shape[0], _CHUNK):
        sl = slice(start, start + _CHUNK)
        f_raw = v_fused[sl]
        f_norm = _minmax(f_raw)
        fmi_ir = normalised_fmi(v_ir[sl], f_raw, f_norm)
        # MATLAB quirk: after the ir pass, the fused patch stays normalised unless ir matched it exactly
        f_seen_by_vis = np.where(np.all(v_ir[sl] == f_raw, axis=1)[:, None], f_raw, f_norm)
        fmi_vis = normalised_fmi(v_vis[sl], f_seen_by_vis, f_norm)
        total += float(np.sum((fmi_ir + fmi_vis) / 2.0))
    return total / v_ir.shape[0]


def rerange(image: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; a constant image becomes all ones (``rerange`` in analysis_fmi.m)."""
    lo, hi = image.min(), image.max()
    return np.ones_like(image) if hi == lo else (image - lo) / (hi - lo)


def meyer_lowpass(length: int = 62) -> np.ndarray:
    """Even-length FIR approximation of the Meyer scaling filter (sums to sqrt 2).

    Sampled from the closed-form frequency response sqrt(2) phi_hat(2 w) with a half-sample
    delay; this approximates MATLAB's 'dmey' but is not identical to its coefficients.
    """
    w = np.linspace(0.0, np.pi, 8193)
    x = np.clip(3.0 * (2.0 * w) / (2.0 * np.pi) - 1.0, 0.0, 1.0)
    nu = x**4 * (35 - 84 * x + 70 * x**2 - 20 * x**3)
    response = np.where(2.0 * w <= 2.0 * np.pi / 3.0, 1.0, np.cos(np.pi / 2.0 * nu))
    response[2.0 * w >= 4.0 * np.pi / 3.0] = 0.0
    n = np.arange(-(length // 2) + 1, length // 2 + 1)
    kernel = np.cos(np.outer(n - 0.5, w)) * response
    taps = np.sqrt(2.0) / np.pi * np.trapezoid(kernel, w, axis=1)
    return taps * (np.sqrt(2.0) / taps.sum())


def _dwt_rows(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    ext = np.pad(image, ((0, 0), (len(taps) - 1, len(taps) - 1)), mode="symmetric")
    full = ndimage.convolve1d(ext, taps, axis=1, mode="constant")
    half = (len(taps) - 1) // 2
    valid = full[:, half + 1 : ext.shape[1] - (len(taps) - 1 - half) + 1]  # n + L - 1 samples
    return valid[:, 1::2]


def dwt2_meyer(image: np.ndarray) -> np.ndarray:
    """One-level 2-D DWT tiled as [[cA, cH], [cV, cD]] (MATLAB ``[cA,cH;cV,cD]`` layout)."""
    low = meyer_lowpass()
    high = low[::-1] * np.where(np.arange(len(low)) % 2 == 0, 1.0, -1.0)
    rows_low, rows_high = _dwt_rows(image, low), _dwt_rows(image, high)
    c_a, c_v = _dwt_rows(rows_low.T, low).T, _dwt_rows(rows_low.T, high).T
    c_h, c_d = _dwt_rows(rows_high.T, low).T, _dwt_rows(rows_high.T, high).T
    return np.block([[c_a, c_h], [c_v, c_d]])


def _fmi_of(images: FusionImages, feature: Callable[[np.ndarray], np.ndarray]) -> float:
    """FMI of the ``feature`` images of fused, ir and vis, each read as MATLAB im2double."""
    # FMI is invariant to the scale; [0, 1] only matters for the features' own arithmetic
    features = {role: feature(images.image(role) / 255.0) for role in IMAGE_ROLES}
    return fmi_of_features(features["fused"], ir=features["ir"], vis=features["vis"])


def fmi_pixel(images: FusionImages, convention: str) -> float:
    """FMI on raw pixels (feature 'none'), in [0, 1]."""
    return _fmi_of(images, lambda image: image)


def fmi_dct(images: FusionImages, convention: str) -> float:
    """FMI on the orthonormal 2-D DCT of each image (MATLAB ``dct2``), in [0, 1]."""
    return _fmi_of(images, lambda image: fft.dctn(image, type=2, norm="ortho"))


def fmi_wavelet(images: FusionImages, convention: str) -> float:
    """FMI on re-ranged one-level Meyer wavelet coefficients, in [0, 1]."""
    return _fmi_of(images, lambda image: rerange(dwt2_meyer(image)))
