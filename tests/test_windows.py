"""The Gaussian windows of contrafuse.windows: MATLAB fspecial values, shape and centring."""
from __future__ import annotations

import numpy as np
import pytest

from contrafuse.windows import gaussian_taps


def _fspecial(size: int, sigma: float) -> np.ndarray:
    """MATLAB fspecial('gaussian', size, sigma), written out in 2-D."""
    x = np.arange(size) - (size - 1) / 2
    h = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return h / h.sum()


@pytest.mark.parametrize("size, sigma", [(3, 0.6), (11, 1.5), (17, 3.4), (4, 1.0)])
def test_outer_product_is_fspecial(size, sigma):
    taps = gaussian_taps(size, sigma)
    assert taps.dtype == np.float64 and taps.shape == (size,)
    assert taps.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(np.outer(taps, taps), _fspecial(size, sigma), rtol=1e-14)


def test_taps_are_symmetric_about_the_centre():
    odd, even = gaussian_taps(9, 1.8), gaussian_taps(8, 1.8)
    np.testing.assert_array_equal(odd, odd[::-1])
    np.testing.assert_array_equal(even, even[::-1])
    assert odd.argmax() == 4 and even[3] == even[4] == even.max()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="sigma"):
        gaussian_taps(5, 0.0)
    with pytest.raises(ValueError, match="size"):
        gaussian_taps(0, 1.0)
