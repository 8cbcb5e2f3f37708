"""FMI and MS-SSIM against direct, slow transcriptions of the published algorithms.

The transcriptions below follow Haghighat's fast-FMI (analysis_fmi.m) and Ma et al.'s
MEF-SSIM / MEF-MS-SSIM (mef_ssim.m, analysis_ms_ssim.m) loop by loop on small images, with
none of the vectorisation tricks of the package (no exact integer box sums, no Gaussian
covariance expansion, no batched joint PDFs).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import fft

from contrafuse import metrics
from contrafuse.metrics import fmi as fmi_module
from contrafuse.metrics.structural import mef_ms_ssim

# ----------------------------------------------------------------------------- FMI, slow


def _slow_normalise(patch):
    lo, hi = patch.min(), patch.max()
    return np.ones_like(patch) if hi == lo else (patch - lo) / (hi - lo)


def _slow_fmi_pair(src, fus):
    """FMI of one 3x3 patch pair; returns (value, fused patch as left after the call)."""
    if np.array_equal(src, fus):
        return 1.0, fus
    a = _slow_normalise(src)
    f = _slow_normalise(fus)
    a_pdf = a.flatten(order="F") / a.sum()
    f_pdf = f.flatten(order="F") / f.sum()
    n = len(a_pdf)
    a_cdf = [sum(a_pdf[: i + 1]) for i in range(n)]
    f_cdf = [sum(f_pdf[: i + 1]) for i in range(n)]
    at, ft = a_pdf - a_pdf.mean(), f_pdf - f_pdf.mean()
    s = float(np.sum(at * ft))
    c = 0.0 if s == 0 else s / math.sqrt(float(np.sum(at * at)) * float(np.sum(ft * ft)))
    ea = sum((i + 1) * a_pdf[i] for i in range(n))
    e2a = sum((i + 1) ** 2 * a_pdf[i] for i in range(n))
    ef = sum((i + 1) * f_pdf[i] for i in range(n))
    e2f = sum((i + 1) ** 2 * f_pdf[i] for i in range(n))
    a_sd = math.sqrt(max(e2a - ea**2, 0.0))
    f_sd = math.sqrt(max(e2f - ef**2, 0.0))

    if c >= 0:
        def bound(x, y):
            return 0.5 * (x + y - abs(x - y))
    else:
        def bound(x, y):
            return 0.5 * (x + y - 1 + abs(x + y - 1))
    if (c >= 0 and (c == 0 or a_sd == 0 or f_sd == 0)) or (c < 0 and (a_sd == 0 or f_sd == 0)):
        mix = 0.0
    else:
        cov = sum(bound(f_cdf[i], a_cdf[j]) - f_cdf[i] * a_cdf[j] for i in range(n) for j in range(n))
        mix = c / (cov / (f_sd * a_sd))

    def m(i, j):  # bound with M(0, .) = M(., 0) = 0
        return 0.0 if i < 0 or j < 0 else bound(f_cdf[i], a_cdf[j])

    joint_entropy = 0.0
    for i in range(n):
        for j in range(n):
            up = m(i, j) - m(i - 1, j) - m(i, j - 1) + m(i - 1, j - 1)
            jpdf = mix * up + (1 - mix) * f_pdf[i] * a_pdf[j]
            if jpdf != 0:
                joint_entropy += -jpdf * math.log2(abs(jpdf))
    h_a = -sum(p * math.log2(p) for p in a_pdf if p != 0)
    h_f = -sum(p * math.log2(p) for p in f_pdf if p != 0)
    mi = h_a + h_f - joint_entropy
    return (0.0 if mi == 0 else 2 * mi / (h_a + h_f)), f


def slow_fmi(fa, fb, ff):
    rows, cols = fa.shape
    values = []
    for p in range(1, rows - 1):
        for q in range(1, cols - 1):
            a_sub = fa[p - 1 : p + 2, q - 1 : q + 2]
            b_sub = fb[p - 1 : p + 2, q - 1 : q + 2]
            f_sub = ff[p - 1 : p + 2, q - 1 : q + 2]
            v_af, f_after = _slow_fmi_pair(a_sub, f_sub)
            v_bf, _ = _slow_fmi_pair(b_sub, f_after)  # MATLAB reuses the modified fSub
            values.append((v_af + v_bf) / 2)
    return float(np.mean(values))


@pytest.fixture(scope="module")
def small_triplet():
    """24x32 images with texture, flat patches (exercises the degenerate branches) and a copy."""
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (24, 32)).astype(np.float64)
    b = np.clip(np.round(np.add.outer(np.arange(24) * 6.0, np.arange(32) * 3.0) + rng.normal(0, 20, (24, 32))), 0, 255)
    a[:8, :10] = 90  # flat block
    b[10:16, 20:] = 200
    f = np.round(0.6 * a + 0.4 * b)
    f[:6, :6] = a[:6, :6]  # windows where F equals A exactly
    f[18:, 24:] = 0
    return f, a, b


def test_fmi_pixel_matches_slow_transcription(small_triplet):
    f, a, b = small_triplet
    expected = slow_fmi(a / 255, b / 255, f / 255)
    ours = metrics.compute(f, ir=a, vis=b, names=["FMI_pixel"])["FMI_pixel"]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_fmi_dct_matches_slow_transcription(small_triplet):
    f, a, b = small_triplet
    feats = [fft.dctn(x / 255, norm="ortho") for x in (a, b, f)]
    expected = slow_fmi(*feats)
    ours = metrics.compute(f, ir=a, vis=b, names=["FMI_dct"])["FMI_dct"]
    assert ours == pytest.approx(expected, rel=1e-9)


def test_fmi_wavelet_matches_slow_transcription(small_triplet):
    f, a, b = small_triplet
    feats = [fmi_module.rerange(fmi_module.dwt2_meyer(x / 255)) for x in (a, b, f)]
    expected = slow_fmi(*feats)
    ours = metrics.compute(f, ir=a, vis=b, names=["FMI_wavelet"])["FMI_wavelet"]
    assert ours == pytest.approx(expected, rel=1e-9)


def test_fmi_of_identical_images_is_one(small_triplet):
    f, _, _ = small_triplet
    assert metrics.compute(f, ir=f, vis=f, names=["FMI_pixel"])["FMI_pixel"] == pytest.approx(1.0)


def test_meyer_filter_is_nearly_orthonormal():
    h = fmi_module.meyer_lowpass()
    assert len(h) == 62
    assert h.sum() == pytest.approx(math.sqrt(2))
    assert np.sum(h * h) == pytest.approx(1.0, abs=1e-3)
    assert np.dot(h[2:], h[:-2]) == pytest.approx(0.0, abs=1e-3)  # even shifts orthogonal


# ------------------------------------------------------------------------ MS-SSIM, slow


def _fspecial_gaussian(size, sigma):
    x = np.arange(size) - (size - 1) / 2
    h = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return h / h.sum()


def _filter2_valid(kernel, image):
    k = kernel.shape[0]
    out = np.empty((image.shape[0] - k + 1, image.shape[1] - k + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(kernel * image[i : i + k, j : j + k])
    return out


def slow_mef_ssim(seq, fused, k_const=0.03):
    """mef_ssim.m, loop for loop. ``seq`` is (H, W, K)."""
    window = _fspecial_gaussian(11, 1.5)
    w = 11
    s_window = np.ones((w, w)) / w**2
    bd = w // 2
    s1, s2, s3 = seq.shape
    eps = np.finfo(float).eps
    mu = np.zeros((s1 - 2 * bd, s2 - 2 * bd, s3))
    ed = np.zeros_like(mu)
    for i in range(s3):
        img = seq[:, :, i]
        mu[:, :, i] = _filter2_valid(s_window, img)
        sigma_sq = _filter2_valid(s_window, img * img) - mu[:, :, i] ** 2
        ed[:, :, i] = np.sqrt(np.maximum(w**2 * sigma_sq, 0)) + 0.001
    r = np.zeros((s1 - 2 * bd, s2 - 2 * bd))
    for i in range(bd, s1 - bd):
        for j in range(bd, s2 - bd):
            vecs = seq[i - bd : i + bd + 1, j - bd : j + bd + 1, :].reshape(w * w, s3, order="F")
            den = sum(np.linalg.norm(vecs[:, k] - mu[i - bd, j - bd, k]) for k in range(s3))
            total = vecs.sum(axis=1)
            num = np.linalg.norm(total - total.mean())
            r[i - bd, j - bd] = (num + eps) / (den + eps)
    r[r > 1] = 1 - eps
    r[r < 0] = eps
    p = np.minimum(np.tan(np.pi / 2 * r), 10)
    w_map = (ed / w) ** p[:, :, None] + eps
    w_map = w_map / w_map.sum(axis=2, keepdims=True)
    max_ed = ed.max(axis=2)
    c = (k_const * 255) ** 2
    q = np.zeros_like(r)
    for i in range(bd, s1 - bd):
        for j in range(bd, s2 - bd):
            blocks = seq[i - bd : i + bd + 1, j - bd : j + bd + 1, :]
            r_block = np.zeros((w, w))
            for k in range(s3):
                r_block += w_map[i - bd, j - bd, k] * (blocks[:, :, k] - mu[i - bd, j - bd, k]) / ed[i - bd, j - bd, k]
            if np.linalg.norm(r_block) > 0:
                r_block = r_block / np.linalg.norm(r_block) * max_ed[i - bd, j - bd]
            f_block = fused[i - bd : i + bd + 1, j - bd : j + bd + 1]
            mu1, mu2 = np.sum(window * r_block), np.sum(window * f_block)
            s11 = np.sum(window * (r_block - mu1) ** 2)
            s22 = np.sum(window * (f_block - mu2) ** 2)
            s12 = np.sum(window * (r_block - mu1) * (f_block - mu2))
            q[i - bd, j - bd] = (2 * s12 + c) / (s11 + s22 + c)
    return q.mean()


def _imfilter_box2_symmetric_then_decimate(image):
    padded = np.pad(image, ((0, 1), (0, 1)), mode="symmetric")
    out = (padded[:-1, :-1] + padded[1:, :-1] + padded[:-1, 1:] + padded[1:, 1:]) / 4
    return out[::2, ::2]


def slow_mef_ms_ssim(seq, fused):
    weights = np.array([0.0448, 0.2856, 0.3001])
    weights = weights / weights.sum()
    scores = []
    for level in range(3):
        scores.append(slow_mef_ssim(seq, fused))
        if level < 2:
            seq = np.stack([_imfilter_box2_symmetric_then_decimate(seq[:, :, k]) for k in range(seq.shape[2])], axis=2)
            fused = _imfilter_box2_symmetric_then_decimate(fused)
    return float(np.prod(np.array(scores) ** weights))


@pytest.fixture(scope="module")
def ms_triplet():
    """47x53 (odd sizes exercise the symmetric padding) with flat regions and edges."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:47, 0:53]
    a = np.clip(np.round(120 + 80 * np.sin(xx / 5.0) + rng.normal(0, 10, xx.shape)), 0, 255)
    b = np.clip(np.round(2.5 * yy + 60 * (xx > 26) + rng.normal(0, 5, xx.shape)), 0, 255)
    a[30:, :20] = 40
    b[30:, :20] = 40  # both flat: the zero-norm branches
    f = np.round(0.5 * a + 0.5 * b)
    return f, a, b


def test_ms_ssim_matches_slow_transcription(ms_triplet):
    f, a, b = ms_triplet
    expected = slow_mef_ms_ssim(np.stack([a, b], axis=2), f)
    ours = metrics.compute(f, ir=a, vis=b, names=["MS_SSIM"])["MS_SSIM"]
    assert ours == pytest.approx(expected, rel=1e-6)


def test_ms_ssim_single_level_matches_slow_transcription(ms_triplet):
    from contrafuse.metrics.structural import mef_ssim_level

    f, a, b = ms_triplet
    expected = slow_mef_ssim(np.stack([a, b], axis=2), f)
    ours = mef_ssim_level([a.astype(np.int64), b.astype(np.int64)], f.astype(np.int64), 1)
    assert ours == pytest.approx(expected, rel=1e-6)


def test_ms_ssim_rejects_images_too_small_for_three_levels():
    img = np.zeros((40, 60))
    with pytest.raises(ValueError, match="too small"):
        mef_ms_ssim([img, img], img)
