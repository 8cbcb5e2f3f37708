"""Full-range BT.601 YCbCr as the field (and the CS2Fusion reference) uses it."""
import numpy as np

from contrafuse.color import rgb_to_luma, rgb_to_ycbcr, ycbcr_to_rgb


def test_round_trip_is_exact_to_float_precision():
    rgb = np.random.default_rng(1).uniform(0, 255, (8, 9, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(*rgb_to_ycbcr(rgb)), rgb, atol=1e-3)


def test_known_values():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]], dtype=np.uint8)
    y, cb, cr = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(y[0], [76.245, 149.685, 29.07, 128.0], atol=1e-9)
    np.testing.assert_allclose(cb[0, 3], 0.0, atol=1e-9)
    np.testing.assert_allclose(cr[0, 0], 127.5, atol=1e-9)
    np.testing.assert_allclose(rgb_to_luma(rgb), y)
