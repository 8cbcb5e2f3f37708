"""A fixed rig: one transform from many pairs (``contrafuse align --rig``), outliers reported.

Simulated rigs of 20 pairs at the resolutions of issue 25 (320x240 infrared against 480x360
visible, and 160x120 against 640x480), with a known scale and shift: every scene is a structured
image, the infrared view a folded remap of it (no global intensity relation) with sensor noise,
seen through the rig's transform. No shared data needed.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from test_registration import corner_error, structured_image

import contrafuse
from contrafuse.cli.main import main
from contrafuse.io import write_image
from contrafuse.registration import (
    Registration,
    RegistrationError,
    RigError,
    estimate,
    estimate_rig,
)

RIGS = {
    "320x240 on 480x360": ((320, 240), (480, 360), 1.52, (12.3, -7.6)),
    "160x120 on 640x480": ((160, 120), (640, 480), 4.1, (-21.0, 14.5)),
}


def rig_matrix(scale: float, shift: tuple[float, float]) -> np.ndarray:
    """Infrared pixel -> visible pixel of the simulated rig."""
    return np.array([[scale, 0, shift[0]], [0, scale, shift[1]], [0, 0, 1.0]])


def rig_pair(seed: int, ir_size: tuple[int, int], vis_size: tuple[int, int], truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scene = structured_image(seed, vis_size[::-1])
    thermal = np.abs(np.sin(3.0 * scene))
    ir = cv2.warpPerspective(thermal, truth, ir_size, flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP)
    ir = ir + np.random.default_rng(seed).normal(0, 0.03, ir.shape)
    return np.clip(ir * 255, 0, 255).astype(np.uint8), (scene * 255).astype(np.uint8)


def rig_pairs(key: str, count: int = 20) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], np.ndarray]:
    ir_size, vis_size, scale, shift = RIGS[key]
    truth = rig_matrix(scale, shift)
    return [(f"p{i:02d}", *rig_pair(100 + i, ir_size, vis_size, truth)) for i in range(count)], truth


@pytest.mark.parametrize("key", RIGS)
def test_rig_recovers_the_known_transform_and_no_pair_is_accepted_far_off(key):
    pairs, truth = rig_pairs(key)
    for name, ir, vis in pairs:  # pair by pair: refused, or within 10 px
        try:
            found = estimate(ir=ir, vis=vis, mode="affine")
        except RegistrationError:
            continue
        assert corner_error(found.matrix, truth, ir.shape) <= 10.0, name
    rig = estimate_rig(pairs, mode="affine")
    assert corner_error(rig.registration.matrix, truth, pairs[0][1].shape) < 1.0
    assert len(rig.used) == 20 and not rig.outliers and not rig.failed
    assert 0.0 < rig.spread[0] <= rig.spread[1] < 2.0


def test_outliers_and_failures_are_reported_and_left_out():
    pairs, truth = rig_pairs("320x240 on 480x360", count=8)
    ir_size, vis_size, scale, shift = RIGS["320x240 on 480x360"]
    knocked = rig_matrix(scale, (shift[0] + 25.0, shift[1]))  # the rig was knocked for this pair
    pairs.append(("knocked", *rig_pair(300, ir_size, vis_size, knocked)))
    unrelated_ir, _ = rig_pair(301, ir_size, vis_size, truth)
    pairs.append(("unrelated", unrelated_ir, rig_pair(302, ir_size, vis_size, truth)[1]))
    pairs.append(("small", pairs[0][1][:200], pairs[0][2]))  # other sizes than the rig's
    rig = estimate_rig(pairs, mode="affine")
    assert [name for name, _ in rig.outliers] == ["knocked"] and rig.outliers[0][1] > 20
    assert {name for name, _ in rig.failed} == {"unrelated", "small"}
    assert corner_error(rig.registration.matrix, truth, pairs[0][1].shape) < 1.0
    with pytest.raises(RigError, match="at least 2 registered pairs"):
        estimate_rig(pairs[-2:], mode="affine")


def test_cli_rig_writes_the_transform_fuse_reads(tmp_path, capsys):
    pairs, truth = rig_pairs("320x240 on 480x360", count=6)
    ir_size, vis_size, scale, shift = RIGS["320x240 on 480x360"]
    pairs.append(("knocked", *rig_pair(300, ir_size, vis_size, rig_matrix(scale, (shift[0] + 25.0, shift[1])))))
    for name, ir, vis in pairs:
        write_image(tmp_path / "ir" / f"{name}.png", ir)
        write_image(tmp_path / "vis" / f"{name}.png", vis)
    out = tmp_path / "rig.json"
    argv = ["align", "--rig", "--ir", str(tmp_path / "ir"), "--vis", str(tmp_path / "vis"), "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "outlier knocked:" in captured.err and "p00: confidence" in captured.out
    assert "consensus of 6 pair(s) (1 outlier(s), 0 failed); spread" in captured.out
    doc = json.loads(out.read_text())
    assert doc["rig"]["outliers"] == ["knocked"] and doc["rig"]["pairs_used"] == 6
    rig = Registration.load(out)
    assert corner_error(rig.matrix, truth, pairs[0][1].shape) < 1.0
    assert main(argv) == 2  # never replaced without --overwrite
    fused = contrafuse.fuse(ir=tmp_path / "ir" / "p00.png", vis=tmp_path / "vis" / "p00.png", model="average",
                            device="cpu", transform=out)
    assert fused.shape == (360, 480)
    assert main(["fuse", "--ir", str(tmp_path / "ir"), "--vis", str(tmp_path / "vis"), "--out", str(tmp_path / "f"),
                 "--model", "average", "--device", "cpu", "--transform", str(out)]) == 0
    assert len(list((tmp_path / "f").glob("*.png"))) == 7
