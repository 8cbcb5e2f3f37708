"""Structural similarity: SSIM (two conventions) and MS-SSIM (MEF-MS-SSIM of Ma et al.)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..windows import filter_valid, gaussian_taps
from ._common import FusionImages

# SSIM constants of Wang et al.
K1, K2 = 0.01, 0.03

# MEF-MS-SSIM (Ma, Zeng, Wang 2015) as called by Tang's analysis_ms_ssim.m
MEF_K = 0.03
MEF_WINDOW = 11
MEF_SIGMA = 1.5
MEF_LEVEL_WEIGHTS = np.array([0.0448, 0.2856, 0.3001]) / (0.0448 + 0.2856 + 0.3001)
_EPS = np.finfo(np.float64).eps


def mean_ssims(
    x: np.ndarray, others: list[np.ndarray], *, data_range: float, gaussian: bool, sample_cov: bool
) -> list[float]:
    """Mean SSIM of ``(H, W)`` ``x`` against each image of ``others``, as
    ``skimage.metrics.structural_similarity`` computes it; x's local statistics are shared.

    ``gaussian=False``: 7x7 uniform window; ``True``: Gaussian sigma 1.5 truncated at 3.5 sigma
    (11x11). Filtering uses 'reflect' borders; the mean skips a border of half a window, and
    only that interior goes through the SSIM formula. The operations are skimage's, in its
    order and in the inputs' dtype (float32 for the CDDFuse convention), so results match it
    exactly. Each score lies in [-1, 1].
    """
    win, smooth = _ssim_window(gaussian)
    pad = (win - 1) // 2
    interior = (slice(pad, -pad), slice(pad, -pad))

    def local_mean(v: np.ndarray) -> np.ndarray:
        return smooth(v)[interior]

    cov_norm = win * win / (win * win - 1) if sample_cov else 1.0
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    ux = local_mean(x)
    ux_sq = ux * ux
    vx = cov_norm * (local_mean(x * x) - ux_sq)
    scores = []
    for y in others:
        uy = local_mean(y)
        uy_sq = uy * uy
        vy = cov_norm * (local_mean(y * y) - uy_sq)
        vxy = cov_norm * (local_mean(x * y) - ux * uy)
        s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux_sq + uy_sq + c1) * (vx + vy + c2))
        scores.append(float(s.mean(dtype=np.float64)))
    return scores


def _ssim_window(gaussian: bool):
    """(window size, smoothing function) of skimage's SSIM."""
    if gaussian:
        return 11, lambda v: ndimage.gaussian_filter(v, sigma=1.5, mode="reflect", truncate=3.5)
    return 7, lambda v: ndimage.uniform_filter(v, size=7)


def ssim(images: FusionImages, convention: str) -> float:
    """SSIM of F against both sources.

    cddfuse: ssim(F,A) + ssim(F,B), 7x7 uniform, sample covariance, data_range=2, float32
    (range 0..2). matlab: 0.5 (ssim(F,A) + ssim(F,B)), Gaussian 11x11 sigma 1.5, population
    covariance, data_range=255 (range -1..1, 1 = identical).
    """
    if convention == "matlab":
        scores = mean_ssims(images.fused, [images.ir, images.vis], data_range=255.0, gaussian=True, sample_cov=False)
        return 0.5 * (scores[0] + scores[1])
    fused, ir, vis = (images.as_float32(role) for role in ("fused", "ir", "vis"))
    scores = mean_ssims(fused, [ir, vis], data_range=2.0, gaussian=False, sample_cov=True)
    return scores[0] + scores[1]


# --- MEF-MS-SSIM -------------------------------------------------------------------------

def _box_sum_valid(image: np.ndarray, size: int) -> np.ndarray:
    """Exact sums over every size x size window of an int64 image ('valid' positions)."""
    integral = np.zeros((image.shape[0] + 1, image.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(image, axis=0), axis=1, out=integral[1:, 1:])
    return integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]


def _halve(image: np.ndarray) -> np.ndarray:
    """2x2 block sums (MATLAB imfilter(ones(2)/4, 'symmetric') then 1:2:end, times 4)."""
    if image.shape[0] % 2:
        image = np.vstack([image, image[-1:]])
    if image.shape[1] % 2:
        image = np.hstack([image, image[:, -1:]])
    return image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2] + image[1::2, 1::2]


def mef_ssim_level(sources: list[np.ndarray], fused: np.ndarray, scale: int) -> float:
    """Mean MEF-SSIM map of one level. Arrays are int64 holding ``value * scale``."""
    n = MEF_WINDOW * MEF_WINDOW
    sums = [_box_sum_valid(s, MEF_WINDOW) for s in sources]
    # centred second moments times n, exact in integers: n * sum(x y) - sum(x) sum(y)
    def comoment(i: int, j: int) -> np.ndarray:
        return n * _box_sum_valid(sources[i] * sources[j], MEF_WINDOW) - sums[i] * sums[j]

    k = len(sources)
    co = {(i, j): comoment(i, j) for i in range(k) for j in range(i, k)}
    norms = [np.sqrt(co[(i, i)] / n) / scale for i in range(k)]  # ||x - mean|| per window
    ed = [v + 0.001 for v in norms]
    total_sq = sum(co[(i, j)] * (1 if i == j else 2) for i in range(k) for j in range(i, k))
    consistency = (np.sqrt(total_sq / n) / scale + _EPS) / (sum(norms) + _EPS)
    consistency[consistency > 1] = 1 - _EPS
    consistency[consistency < 0] = _EPS
    power = np.minimum(np.tan(np.pi / 2 * consistency), 10.0)
    weights = [(e / MEF_WINDOW) ** power + _EPS for e in ed]
    total_w = sum(weights)
    alpha = [w / total_w / e for w, e in zip(weights, ed)]
    max_ed = np.maximum.reduce(ed)

    # ||sum_k alpha_k (x_k - mu_k)||^2 over the window, then rescale that block to max_ed
    block_sq = sum(
        alpha[i] * alpha[j] * (co[(i, j)] / n) * (1 if i == j else 2) for i in range(k) for j in range(i, k)
    ) / scale**2
    block_norm = np.sqrt(np.maximum(block_sq, 0.0))
    gain = np.where(block_norm > 0, max_ed / np.where(block_norm > 0, block_norm, 1.0), 1.0)

    taps = gaussian_taps(MEF_WINDOW, MEF_SIGMA).astype(np.float32)
    # only (co)variances enter the MEF-SSIM map, so mean-centred float32 images are enough
    real = [((s - s.mean()) / scale).astype(np.float32) for s in sources]
    f = ((fused - fused.mean()) / scale).astype(np.float32)
    g_src = [filter_valid(r, taps) for r in real]
    g_f = filter_valid(f, taps)
    sigma_f = filter_valid(f * f, taps) - g_f * g_f
    sigma_r = np.zeros_like(g_f)
    sigma_rf = np.zeros_like(g_f)
    for i in range(k):
        sigma_rf += alpha[i] * (filter_valid(real[i] * f, taps) - g_src[i] * g_f)
        for j in range(i, k):
            cov = filter_valid(real[i] * real[j], taps) - g_src[i] * g_src[j]
            sigma_r += alpha[i] * alpha[j] * cov * (1 if i == j else 2)
    sigma_r *= gain * gain
    sigma_rf *= gain
    c = (MEF_K * 255.0) ** 2
    q_map = (2 * sigma_rf + c) / (sigma_r + sigma_f + c)
    return float(q_map.mean())


def mef_ms_ssim(sources: list[np.ndarray], fused: np.ndarray) -> float:
    """MEF-MS-SSIM of Ma et al. (3 levels, K=0.03, weights [0.0448 0.2856 0.3001] normalised).

    Inputs: float64 ``(H, W)`` integer-valued 0..255. Needs min(H, W) / 4 >= 11; smaller raises
    ``ValueError`` (the MATLAB code returns -Inf). A level score <= 0 is clipped to 0 before the
    weighted geometric mean (MATLAB would return a complex number).
    """
    levels = len(MEF_LEVEL_WEIGHTS)
    if min(fused.shape) / 2 ** (levels - 1) < MEF_WINDOW:
        raise ValueError(f"MS_SSIM: image {fused.shape} too small; needs min(H, W) >= {MEF_WINDOW * 2 ** (levels - 1)}")
    srcs = [np.rint(s).astype(np.int64) for s in sources]
    fus = np.rint(fused).astype(np.int64)
    scores = []
    for level in range(levels):
        scores.append(mef_ssim_level(srcs, fus, 4**level))
        if level < levels - 1:
            srcs = [_halve(s) for s in srcs]
            fus = _halve(fus)
    clipped = np.maximum(np.array(scores), 0.0)
    return float(np.prod(clipped**MEF_LEVEL_WEIGHTS))


def ms_ssim(images: FusionImages, convention: str) -> float:
    """MS-SSIM: MEF-MS-SSIM of F against the (IR, VIS) sequence (Tang's MATLAB; both conventions)."""
    return mef_ms_ssim([images.ir, images.vis], images.fused)
