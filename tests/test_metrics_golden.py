"""Every value of shared/reference/metrics/golden_tno_seafusion.json, reproduced.

Keys without suffix are the CDDFuse evaluator (convention "cddfuse"); MI_bits, AG_matlab,
MSE_01, PSNR_matlab, SSIM_mean_gauss_dr255 and Nabf are Tang's MATLAB conventions ("matlab").
"""
from __future__ import annotations

import json

import pytest

from contrafuse import metrics

GOLDEN = "reference/metrics/golden_tno_seafusion.json"

# golden key -> (our metric name, convention, relative tolerance)
KEYS = {
    "EN": ("EN", "cddfuse", 1e-4),
    "SD": ("SD", "cddfuse", 1e-4),
    "SF": ("SF", "cddfuse", 1e-4),
    "AG": ("AG", "cddfuse", 1e-4),
    "MI_nats_sklearn": ("MI", "cddfuse", 1e-4),
    "SCD": ("SCD", "cddfuse", 1e-4),
    "VIF_sum": ("VIF", "cddfuse", 1e-3),
    "Qabf": ("Qabf", "cddfuse", 1e-3),
    "CC": ("CC", "cddfuse", 1e-4),
    "MSE_255": ("MSE", "cddfuse", 1e-4),
    "PSNR_maxF": ("PSNR", "cddfuse", 1e-4),
    "SSIM_sum_skimage_dr2": ("SSIM", "cddfuse", 1e-4),
    "MI_bits": ("MI", "matlab", 1e-4),
    "AG_matlab": ("AG", "matlab", 1e-4),
    "MSE_01": ("MSE", "matlab", 1e-4),
    "PSNR_matlab": ("PSNR", "matlab", 1e-4),
    "SSIM_mean_gauss_dr255": ("SSIM", "matlab", 1e-4),
    "Nabf": ("Nabf", "matlab", 1e-4),
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
    assert ours == pytest.approx(expected, rel=rel), f"{key} item {index + 1}: {ours} vs {expected}"
