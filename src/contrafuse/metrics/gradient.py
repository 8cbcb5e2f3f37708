"""Edge-preservation metrics of Xydeas and Petrovic: Qabf and the Nabf artifact measure.

Sobel responses are computed once per image and convention and cached on
:class:`FusionImages`, so Qabf and Nabf in one suite filter each image once.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import FusionImages, warn_fallback

# Qabf (Xydeas-Petrovic, as in the CDDFuse evaluator and Tang's analysis_Qabf.m)
_SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)  # h1
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)  # h3
QABF_TG, QABF_KG, QABF_DG = 0.9994, -15.0, 0.5
QABF_TA, QABF_KA, QABF_DA = 0.9879, -22.0, 0.8

# Nabf (Shreyamsha Kumar's modified artifact measure, Tang's analysis_nabf.m)
NABF_TD, NABF_WT_MIN, NABF_LG = 2.0, 0.001, 1.5
NABF_NRG, NABF_KG, NABF_SIGMAG = 0.9999, 19.0, 0.5
NABF_NRA, NABF_KA, NABF_SIGMAA = 0.9995, 22.0, 0.5


def qabf_edges(image: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(strength, angle) of ``conv2(image, sobel, 'same')`` with zero padding, in ``dtype``.

    The angle is atan(Sy / Sx), pi/2 where Sx = 0, as in the reference code.
    """
    img = image.astype(dtype)
    sx = ndimage.convolve(img, _SOBEL_X.astype(dtype), mode="constant")
    sy = ndimage.convolve(img, _SOBEL_Y.astype(dtype), mode="constant")
    strength = np.sqrt(sx * sx + sy * sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(sx == 0, dtype(np.pi / 2), np.arctan(sy / sx)).astype(dtype)
    return strength, angle


def _qabf_edges_cached(images: FusionImages, which: str, convention: str):
    def compute():
        if convention == "matlab":
            # MATLAB runs on im2double images; scaling only matters for the GAF quirk below
            strength, angle = qabf_edges(getattr(images, which), np.float64)
            return strength / 255.0, angle
        return qabf_edges(getattr(images, which), np.float32)

    return images.cached(f"qabf_edges_{convention}_{which}", compute)


def _edge_preservation(g_src, a_src, g_f, a_f) -> np.ndarray:
    """Q^{XF} map: product of the strength and orientation sigmoids."""
    small, large = np.minimum(g_src, g_f), np.maximum(g_src, g_f)
    ratio = np.divide(small, large, out=np.zeros_like(small), where=g_src != g_f)
    # quirk kept from the reference: where the strengths are equal, the strength itself, not 1
    ratio = np.where(g_src == g_f, g_f, ratio)
    orientation = 1 - np.abs(a_src - a_f) / (np.pi / 2)
    q_strength = QABF_TG / (1 + np.exp(QABF_KG * (ratio - QABF_DG)))
    q_angle = QABF_TA / (1 + np.exp(QABF_KA * (orientation - QABF_DA)))
    return q_strength * q_angle


def qabf(images: FusionImages, convention: str) -> float:
    """Qabf in [0, 1]: edge-strength-weighted preservation of A's and B's edges in F.

    cddfuse works in float32 like the evaluator; matlab in float64 on [0, 1] images. Both
    sources constant (no edges at all) returns 0 with a warning.
    """
    g_a, a_a = _qabf_edges_cached(images, "a", convention)
    g_b, a_b = _qabf_edges_cached(images, "b", convention)
    g_f, a_f = _qabf_edges_cached(images, "f", convention)
    q_af = _edge_preservation(g_a, a_a, g_f, a_f)
    q_bf = _edge_preservation(g_b, a_b, g_f, a_f)
    denominator = np.sum(g_a + g_b)
    if denominator == 0:
        warn_fallback("Qabf", "both sources are constant (no edges)", 0.0)
        return 0.0
    return float(np.sum(q_af * g_a + q_bf * g_b) / denominator)


def nabf_edges(image: np.ndarray, border: str = "wrap") -> tuple[np.ndarray, np.ndarray]:
    """(strength, angle) from Sobel/8 correlation (``sobel_fn.m``) with periodic borders.

    The angle is atan(gv / gh), 0 where both are 0. ``border="mirror"`` is what
    ``per_extn_im_fn.m`` really does despite its name; the golden values use "wrap".
    """
    gv = ndimage.correlate(image, _SOBEL_X / 8.0, mode=border)
    gh = ndimage.correlate(image, -_SOBEL_Y / 8.0, mode=border)
    strength = np.sqrt(gh * gh + gv * gv)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where((gv == 0) & (gh == 0), 0.0, np.arctan(gv / gh))
    return strength, angle


def _nabf_preservation(g_src, a_src, g_f, a_f) -> np.ndarray:
    nonzero = (g_src != 0) & (g_f != 0)
    small, large = np.minimum(g_src, g_f), np.maximum(g_src, g_f)
    ratio = np.divide(small, large, out=np.zeros_like(small), where=nonzero)
    orientation = np.abs(np.abs(a_src - a_f) - np.pi / 2) * (2 / np.pi)
    q_strength = NABF_NRG / (1 + np.exp(-NABF_KG * (ratio - NABF_SIGMAG)))
    q_angle = NABF_NRA / (1 + np.exp(-NABF_KA * (orientation - NABF_SIGMAA)))
    return np.sqrt(q_strength * q_angle)


def _nabf_weights(strength: np.ndarray) -> np.ndarray:
    return np.where(strength >= NABF_TD, strength * np.sqrt(strength), NABF_WT_MIN)  # g^1.5


def nabf_value(f: np.ndarray, a: np.ndarray, b: np.ndarray, border: str = "wrap") -> float:
    """Nabf of float ``(H, W)`` images in the scale given (0..255 for the golden values)."""
    (g_a, a_a), (g_b, a_b), (g_f, a_f) = (nabf_edges(x, border) for x in (a, b, f))
    return _nabf_from_edges(g_a, a_a, g_b, a_b, g_f, a_f)


def _nabf_from_edges(g_a, a_a, g_b, a_b, g_f, a_f) -> float:
    q_af = _nabf_preservation(g_a, a_a, g_f, a_f)
    q_bf = _nabf_preservation(g_b, a_b, g_f, a_f)
    w_a, w_b = _nabf_weights(g_a), _nabf_weights(g_b)
    artifacts = (g_f > g_a) & (g_f > g_b)
    loss = np.where(artifacts, (1 - q_af) * w_a + (1 - q_bf) * w_b, 0.0)
    return float(np.sum(loss) / np.sum(w_a + w_b))


def nabf(images: FusionImages, convention: str) -> float:
    """Nabf in [0, 1] (lower is better): weighted loss at pixels where F has stronger edges
    than both sources, i.e. artifacts (Shreyamsha Kumar's modified NABF).

    Same in both conventions: Sobel/8 with periodic borders on 0..255 images, which is what
    the golden values use. Tang's analysis_Reference.m passes im2double images (so the Td = 2
    edge threshold never fires) and mirrors the borders; see docs/metrics.md.
    """
    return nabf_value(images.f, images.a, images.b, border="wrap")
