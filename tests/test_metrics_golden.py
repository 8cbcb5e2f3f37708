"""Every value of shared/reference/metrics/golden_tno_seafusion.json, reproduced.

Keys without suffix are the CDDFuse evaluator (convention "cddfuse"); MI_bits, AG_matlab,
MSE_01, PSNR_matlab, SSIM_mean_gauss_dr255 and Nabf are Tang's MATLAB conventions ("matlab").
"""
from __future__ import annotations

import json

import pytest

from contrafuse import metrics

GOLDEN = "reference/metrics/golden_tno_seafusion.json"

# Relative tolerances: what the README and docs/metrics.md claim. The golden values come from
# the reference's float32 arithmetic, hence up to ~1.3e-7 from our float64 values; VIF filters
# in float32 itself (worst measured 2.496e-6, TNO 02).
REL_TOL = 1.5e-7
VIF_REL_TOL = 2.5e-6

# golden key -> (our metric name, convention, relative tolerance)
KEYS = {
    "EN": ("EN", "cddfuse", REL_TOL),
    "SD": ("SD", "cddfuse", REL_TOL),
    "SF": ("SF", "cddfuse", REL_TOL),
    "AG": ("AG", "cddfuse", REL_TOL),
    "MI_nats_sklearn": ("MI", "cddfuse", REL_TOL),
    "SCD": ("SCD", "cddfuse", REL_TOL),
    "VIF_sum": ("VIF", "cddfuse", VIF_REL_TOL),
    "Qabf": ("Qabf", "cddfuse", REL_TOL),
    "CC": ("CC", "cddfuse", REL_TOL),
    "MSE_255": ("MSE", "cddfuse", REL_TOL),
    "PSNR_maxF": ("PSNR", "cddfuse", REL_TOL),
    "SSIM_sum_skimage_dr2": ("SSIM", "cddfuse", REL_TOL),
    "MI_bits": ("MI", "matlab", REL_TOL),
    "AG_matlab": ("AG", "matlab", REL_TOL),
    "MSE_01": ("MSE", "matlab", REL_TOL),
    "PSNR_matlab": ("PSNR", "matlab", REL_TOL),
    "SSIM_mean_gauss_dr255": ("SSIM", "matlab", REL_TOL),
    "Nabf": ("Nabf", "matlab", REL_TOL),
}


@pytest.fixture(scope="module")
def golden(shared_dir):
    path = shared_dir / GOLDEN
    if not path.exists():
        pytest.fail(f"{path} missing although the shared folder exists")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def computed(golden, shared_dir):
    """Our values for every golden item: {(item index, convention): {name: value}}."""
    results = {}
    for index, item in enumerate(golden["items"]):
        paths = {role: shared_dir / item[role] for role in ("fused", "ir", "vis")}
        for convention in metrics.CONVENTIONS:
            names = sorted({name for name, conv, _ in KEYS.values() if conv == convention})
            results[index, convention] = metrics.compute(**paths, names=names, convention=convention)
    return results


def test_golden_file_has_every_key_we_check(golden):
    for item in golden["items"]:
        assert set(item["metrics"]) == set(KEYS)


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("key", sorted(KEYS))
def test_reproduces_golden_value(golden, computed, index, key):
    name, convention, rel = KEYS[key]
    expected = golden["items"][index]["metrics"][key]
    ours = computed[index, convention][name]
    assert ours == pytest.approx(expected, rel=rel, abs=0), f"{key} item {index + 1}: {ours} vs {expected}"
