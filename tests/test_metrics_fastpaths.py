"""The fast paths of the metrics suite against the plain computations they replace."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.signal import convolve2d

from contrafuse import windows
from contrafuse.metrics import basic, gradient, vif
from contrafuse.metrics._common import FusionImages

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32)


def _triplet(shape, seed=0):
    rng = np.random.default_rng(seed)
    a, b = (rng.integers(0, 256, shape).astype(np.float64) for _ in range(2))
    f = np.clip(np.round(0.6 * a + 0.5 * b + rng.normal(0, 8, shape)), 0, 255)
    return FusionImages(fused=f, ir=a, vis=b)


@pytest.mark.parametrize("shape", [(2, 2), (2, 7), (5, 3), (17, 23)])
def test_shared_sobel_matches_conv2_and_periodic_correlation(shape):
    images = _triplet(shape)
    for role in ("fused", "ir", "vis"):
        image = images.image(role).astype(np.float32)
        sx, sy = gradient._sobel_zero_padded(images, role)
        np.testing.assert_array_equal(sx, convolve2d(image, SOBEL_X, mode="same"))
        np.testing.assert_array_equal(sy, convolve2d(image, SOBEL_Y, mode="same"))
        wx, wy = gradient._sobel_wrap_cached(images, role)
        np.testing.assert_array_equal(wx, -ndimage.correlate(image, SOBEL_X, mode="wrap"))
        np.testing.assert_array_equal(wy, -ndimage.correlate(image, SOBEL_Y, mode="wrap"))


def test_nabf_from_shared_sobel_equals_generic_path():
    images = _triplet((40, 53), seed=1)
    fast = gradient.nabf(images, "cddfuse")
    generic = gradient.nabf_value(images.fused, ir=images.ir, vis=images.vis, border="wrap")
    assert fast == pytest.approx(generic, rel=1e-14)


@pytest.mark.parametrize("size", [3, 5, 9, 17])
@pytest.mark.parametrize("step", [1, 2])
def test_vif_filter_valid_matches_2d_convolution(size, step):
    rng = np.random.default_rng(size)
    image = rng.normal(0, 60, (41, 50)).astype(np.float32)
    taps = vif.vif_taps(size)
    expected = convolve2d(image.astype(np.float64), np.outer(taps, taps).astype(np.float64), mode="valid")
    np.testing.assert_allclose(windows.filter_valid(image, taps, step=step), expected[::step, ::step], rtol=0, atol=1e-3)


def test_correlations_from_comoments_match_pearson():
    images = _triplet((30, 31), seed=2)
    f, a, b = images.fused.ravel(), images.ir.ravel(), images.vis.ravel()

    def r(x, y):
        return np.corrcoef(x, y)[0, 1]

    assert basic.correlation_coefficient(images, "cddfuse") == pytest.approx((r(a, f) + r(b, f)) / 2, rel=1e-12)
    scd = r(f - b, a) + r(f - a, b)
    assert basic.sum_of_correlations_of_differences(images, "cddfuse") == pytest.approx(scd, rel=1e-12)
