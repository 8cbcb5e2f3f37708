"""The Gaussian windows of contrafuse.windows: values, shape and centring."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from contrafuse.windows import gaussian_taps


@pytest.mark.parametrize("size, sigma", [(3, 0.6), (11, 1.5), (17, 3.4), (4, 1.0)])
def test_taps_are_scipys_gaussian_window_normalised(size, sigma):
    taps = gaussian_taps(size, sigma)
    assert taps.dtype == np.float64 and taps.shape == (size,)
    assert taps.sum() == pytest.approx(1.0, abs=1e-15)
    reference = signal.windows.gaussian(size, sigma, sym=True)
    np.testing.assert_allclose(taps, reference / reference.sum(), rtol=1e-14)


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
