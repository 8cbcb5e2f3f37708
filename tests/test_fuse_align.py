"""``fuse --align MODE`` and ``--transform FILE``: pairs registered before the model sees them.

A real pair (TNO 08, whose sources are aligned; shared data, failing under CI when missing) is
misaligned by a known affine warp; fusing it with alignment must give what fusing the aligned
pair gives. A pair of two different scenes must fail, naming the pair, and never be fused.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

import contrafuse
import contrafuse.preparation
from conftest import require_module, require_path
from contrafuse.cli.main import main
from contrafuse.errors import ContrafuseError, PairError, RegistrationError
from contrafuse.fusion import FuseOptions
from contrafuse.io import read_image, write_image
from contrafuse.registration import VERIFY_BELOW, Registration

MODEL = "cs2fusion"


@pytest.fixture(scope="module")
def data(shared_dir: Path) -> Path:
    return require_path(shared_dir / "data", "shared datasets")


@pytest.fixture(scope="module")
def pair(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """TNO 08 (aligned sources) as 8-bit gray (ir, vis)."""
    return read_image(data / "tno42/ir/08.png")[..., 0].copy(), read_image(data / "tno42/vis/08.png")[..., 0].copy()


def misaligned(ir: np.ndarray) -> np.ndarray:
    """``ir`` moved by a known affine warp: 3 degrees, 5 % larger, shifted (6, -4) px."""
    height, width = ir.shape[:2]
    warp = cv2.getRotationMatrix2D((width / 2, height / 2), 3.0, 1.05)
    warp[:, 2] += (6.0, -4.0)
    return cv2.warpAffine(ir, warp, (width, height), flags=cv2.INTER_LINEAR)


INTERIOR = (slice(24, -24), slice(24, -24))  # away from the border the warp leaves uncovered


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(correlation, mean absolute difference) over the interior."""
    a, b = a[INTERIOR].astype(float), b[INTERIOR].astype(float)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1]), float(np.abs(a - b).mean())


@pytest.fixture(scope="module")
def reference(pair) -> np.ndarray:
    ir, vis = pair
    return contrafuse.fuse(ir=ir, vis=vis, model=MODEL, device="cpu")


@pytest.fixture()
def files(pair, data, tmp_path) -> dict[str, Path]:
    """The misaligned pair, and the IR of one scene with the VIS of another (TNO 17 on RoadScene 04688)."""
    ir, vis = pair
    return {
        "ir": write_image(tmp_path / "ir" / "a.png", misaligned(ir)),
        "vis": write_image(tmp_path / "vis" / "a.png", vis),
        "other_ir": write_image(tmp_path / "ir" / "c.png", read_image(data / "tno42/ir/17.png")),
        "other_vis": write_image(tmp_path / "vis" / "c.png", read_image(data / "roadscene/vis/FLIR_04688.jpg")),
    }


def test_align_recovers_a_known_affine_misalignment(pair, reference):
    ir, vis = pair
    moving = misaligned(ir)
    aligned = contrafuse.fuse(ir=moving, vis=vis, model=MODEL, device="cpu", align="affine")
    unaligned = contrafuse.fuse(ir=moving, vis=vis, model=MODEL, device="cpu")
    correlation, difference = agreement(aligned, reference)
    assert correlation >= 0.99 and difference < 2.0
    assert agreement(unaligned, reference)[1] > 3 * difference  # the misalignment was there to undo


def test_transform_round_trip(files, reference, tmp_path, capsys):
    """`contrafuse align` writes the transform; `fuse --transform` applies it: the same as `fuse --align`."""
    assert main(["align", "--ir", str(files["ir"]), "--vis", str(files["vis"]), "--out", str(tmp_path / "al"),
                 "--mode", "affine"]) == 0
    transform = tmp_path / "al" / "a.json"
    base = ["fuse", "--ir", str(files["ir"]), "--vis", str(files["vis"]), "--model", MODEL, "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "saved.png"), "--transform", str(transform)]) == 0
    assert main([*base, "--out", str(tmp_path / "estimated.png"), "--align", "affine"]) == 0
    saved, estimated = read_image(tmp_path / "saved.png"), read_image(tmp_path / "estimated.png")
    assert np.array_equal(saved, estimated)
    assert agreement(saved, reference)[0] >= 0.99
    api = contrafuse.fuse(ir=files["ir"], vis=files["vis"], model=MODEL, device="cpu", transform=transform)
    assert np.array_equal(api, saved)
    loaded = Registration.load(transform)
    assert np.array_equal(contrafuse.fuse(ir=files["ir"], vis=files["vis"], model=MODEL, device="cpu", transform=loaded), saved)


def test_a_transform_for_other_sizes_is_refused_naming_the_pair(files, pair, tmp_path):
    ir, vis = pair
    assert main(["align", "--ir", str(files["ir"]), "--vis", str(files["vis"]), "--out", str(tmp_path / "al")]) == 0
    with pytest.raises(PairError, match=r"small\.png \+ .*a\.png: the transform expects a 256x256 ir image"):
        contrafuse.fuse(ir=write_image(tmp_path / "small.png", ir[:200, :220]), vis=files["vis"], model="average",
                        device="cpu", transform=tmp_path / "al" / "a.json")


def test_unrelated_pair_fails_naming_it_and_writes_nothing(files, tmp_path, capsys):
    out = tmp_path / "fused.png"
    argv = ["fuse", "--ir", str(files["other_ir"]), "--vis", str(files["other_vis"]), "--out", str(out),
            "--model", "average", "--device", "cpu", "--resize", "--align", "affine"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{files['other_ir']} + {files['other_vis']}: cannot register" in err and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(RegistrationError, match="cannot register"):
        contrafuse.fuse(ir=files["other_ir"], vis=files["other_vis"], model="average", device="cpu", align="affine")


def test_folder_mode_estimates_per_pair_and_reports_the_failure(files, reference, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["fuse", "--ir", str(files["ir"].parent), "--vis", str(files["vis"].parent), "--out", str(out),
            "--model", MODEL, "--device", "cpu", "--align", "affine"]
    assert main(argv) == 1  # one pair failed
    err = capsys.readouterr().err
    assert "failed c:" in err and "cannot register" in err and str(files["other_ir"]) in err
    assert not (out / "c.png").exists()
    assert agreement(read_image(out / "a.png"), reference)[0] >= 0.99
    report = contrafuse.fuse_folders(ir=files["ir"].parent, vis=files["vis"].parent, out=tmp_path / "api",
                                     model="average", device="cpu", align="affine", progress=False)
    assert [p.name for p in report.written] == ["a.png"] and [name for name, _ in report.failed] == ["c"]


def test_fuse_prints_the_confidence_and_takes_min_confidence_and_verify(files, tmp_path, capsys, monkeypatch):
    base = ["fuse", "--ir", str(files["ir"]), "--vis", str(files["vis"]), "--model", "average", "--device", "cpu",
            "--align", "affine"]
    assert main([*base, "--out", str(tmp_path / "a.png")]) == 0
    printed = capsys.readouterr().out
    confidence = float(printed.split("confidence ")[1].rstrip(")\n"))
    assert 0.25 < confidence <= 1.0
    # a threshold above the pair's confidence refuses it: exit 1, the confidence named, nothing written
    assert main([*base, "--out", str(tmp_path / "b.png"), "--min-confidence", f"{confidence + 0.01:.3f}"]) == 1
    assert f"confidence {confidence:.3f} is below" in capsys.readouterr().err and not (tmp_path / "b.png").exists()
    seen = []
    real = contrafuse.preparation.estimate
    monkeypatch.setattr(contrafuse.preparation, "estimate",
                        lambda **kw: seen.append((kw["verify"], kw["verify_below"])) or real(**kw))
    assert main([*base, "--out", str(tmp_path / "c.png"), "--verify"]) == 0 and seen == [(True, VERIFY_BELOW)]
    assert main([*base, "--out", str(tmp_path / "e.png"), "--verify-below", "0"]) == 0 and seen[-1] == (False, 0.0)
    assert main(["fuse", "--ir", str(files["ir"]), "--vis", str(files["vis"]), "--out", str(tmp_path / "d.png"),
                 "--verify"]) == 2  # --verify without --align
    with pytest.raises(ContrafuseError, match=r"min_confidence must be in \[0, 1\]"):
        FuseOptions(align="affine", min_confidence=1.5)
    with pytest.raises(ContrafuseError, match=r"verify_below must be in \[0, 1\]"):
        FuseOptions(align="affine", verify_below=-0.1)


def test_folder_mode_prints_each_confidence(files, tmp_path, capsys):
    argv = ["fuse", "--ir", str(files["ir"].parent), "--vis", str(files["vis"].parent), "--out", str(tmp_path / "o"),
            "--model", "average", "--device", "cpu", "--align", "affine"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "a: aligned, confidence 0." in captured.out and "failed c:" in captured.err
    report = contrafuse.fuse_folders(ir=files["ir"].parent, vis=files["vis"].parent, out=tmp_path / "api",
                                     model="average", device="cpu", align="affine", progress=False)
    assert set(report.confidence) == {"a"} and report.confidence["a"] > 0.25


def test_direction_vis_to_ir_gives_the_infrared_frame(pair):
    ir, vis = pair
    small_ir = cv2.resize(ir, (200, 180), interpolation=cv2.INTER_AREA)
    fused = contrafuse.fuse(ir=small_ir, vis=vis, model="average", device="cpu", align="affine", direction="vis-to-ir")
    assert fused.shape == small_ir.shape


def test_contradicting_options_are_refused(files, tmp_path, capsys):
    assert main(["align", "--ir", str(files["ir"]), "--vis", str(files["vis"]), "--out", str(tmp_path / "al")]) == 0
    transform = tmp_path / "al" / "a.json"
    with pytest.raises(ContrafuseError, match="contradict"):
        FuseOptions(align="affine", transform=transform)
    with pytest.raises(ContrafuseError, match="contradicts the saved transform"):
        FuseOptions(transform=transform, direction="vis_to_ir")
    with pytest.raises(ContrafuseError, match="missing.json: transform file not found"):
        FuseOptions(transform=tmp_path / "missing.json")
    base = ["fuse", "--ir", str(files["ir"]), "--vis", str(files["vis"]), "--out", str(tmp_path / "x.png")]
    assert main([*base, "--align", "affine", "--transform", str(transform)]) == 2
    assert main([*base, "--align-every", "3"]) == 2
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    assert main([*base, "--transform", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "bad.json: not a contrafuse.registration document" in err and "Traceback" not in err


# -- video ---------------------------------------------------------------------------------------

def clip(path: Path, frames: list[np.ndarray]) -> Path:
    from contrafuse.video import VideoWriter

    height, width = frames[0].shape[:2]
    writer = VideoWriter(path, Fraction(10), width, height, "ffv1")  # lossless: frames decode exactly
    for frame in frames:
        writer.write(np.repeat(frame[..., None], 3, axis=2))
    return writer.close()


@pytest.mark.parametrize("every, estimates", [(0, 1), (2, 2)], ids=["once", "every 2 frames"])
def test_video_estimates_once_by_default(pair, tmp_path, monkeypatch, every, estimates):
    require_module("av", "video")
    from contrafuse.fusion import fuse_arrays
    from contrafuse.models import create_model
    from contrafuse.video import fuse_video, read_frames

    ir, vis = pair
    moving = misaligned(ir)
    calls = []
    real = contrafuse.preparation.estimate
    monkeypatch.setattr(contrafuse.preparation, "estimate", lambda **kw: calls.append(kw.get("initial")) or real(**kw))
    ir_clip, vis_clip = clip(tmp_path / "ir.mkv", [moving] * 3), clip(tmp_path / "vis.mkv", [vis] * 3)
    out = fuse_video(ir=ir_clip, vis=vis_clip, out=tmp_path / "out.mkv", model="average", device="cpu", codec="ffv1",
                     align="affine", align_every=every, progress=False)
    assert len(calls) == estimates
    assert calls[0] is None and all(isinstance(c, Registration) for c in calls[1:])  # later ones start from the last
    aligned = fuse_arrays(create_model("average"), ir=ir, vis=vis)
    for fused in read_frames(out):
        assert agreement(fused[..., 0], aligned)[0] >= 0.99


def test_video_keeps_the_last_good_transform_when_a_re_estimate_is_refused(pair, tmp_path, capsys):
    """Frame 2 of 5 is a flat infrared frame (a lens cap, a sensor glitch): its re-estimate is refused,
    the transform of frame 0 is kept for it, the output has every frame and the summary names frame 2."""
    require_module("av", "video")
    from contrafuse.video import fuse_video, probe

    ir, vis = pair
    moving = misaligned(ir)
    flat = np.full_like(moving, 90)
    ir_clip = clip(tmp_path / "ir.mkv", [moving, moving, flat, moving, moving])
    vis_clip = clip(tmp_path / "vis.mkv", [vis] * 5)
    report = fuse_video(ir=ir_clip, vis=vis_clip, out=tmp_path / "out.mkv", model="average", device="cpu",
                        codec="ffv1", align="affine", align_every=2, progress=False)
    assert report.frames == 5 and probe(report.path).frames == 5
    assert [frame for frame, _ in report.kept] == [2] and "cannot" not in report.kept[0][1]
    assert [frame for frame, _ in report.estimated] == [0, 4]
    argv = ["fuse", "--ir", str(ir_clip), "--vis", str(vis_clip), "--out", str(tmp_path / "cli.mkv"), "--model",
            "average", "--device", "cpu", "--align", "affine", "--align-every", "2"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "frame 2: re-estimate refused" in captured.err and "frame 0: aligned, confidence" in captured.out
    assert "1 refused re-estimate(s)" in captured.out
    # the first frame unregistrable: nothing good to keep, so the run stops and writes nothing
    first_bad = clip(tmp_path / "ir2.mkv", [flat, moving, moving, moving, moving])
    with pytest.raises(RegistrationError, match="frame 0"):
        fuse_video(ir=first_bad, vis=vis_clip, out=tmp_path / "none.mkv", model="average", device="cpu",
                   codec="ffv1", align="affine", align_every=2, progress=False)
    assert not (tmp_path / "none.mkv").exists()
