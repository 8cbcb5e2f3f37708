"""Video fusion: frame-by-frame round trip, matching checks, atomic no-overwrite output, the CLI branch."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from conftest import require_module

require_module("av", "video")

from contrafuse.cli.main import main  # noqa: E402
from contrafuse.fusion import fuse_arrays  # noqa: E402
from contrafuse.models import create_model  # noqa: E402
from contrafuse.video import VideoError, VideoWriter, fuse_video, probe, read_frames  # noqa: E402

FRAMES, WIDTH, HEIGHT = 5, 64, 48


def make_clip(path: Path, frames: int = FRAMES, rate: int = 10, gray: bool = False, codec: str | None = "ffv1", seed: int = 0,
              size: tuple[int, int] = (HEIGHT, WIDTH)) -> Path:
    """A short clip of moving gradients plus noise (lossless ffv1 by default, so frames decode exactly)."""
    rng = np.random.default_rng(seed)
    height, width = size
    writer = VideoWriter(path, Fraction(rate), width, height, codec)
    yy, xx = np.mgrid[:height, :width]
    for t in range(frames):
        base = (128 + 100 * np.sin((xx + 3 * t) / 6.0) * np.cos(yy / 9.0) + rng.normal(0, 8, (height, width))).clip(0, 255)
        rgb = np.stack([base, base, base] if gray else [base, base[::-1], 255 - base], -1).astype(np.uint8)
        writer.write(rgb)
    return writer.close()


@pytest.fixture()
def clips(tmp_path: Path) -> tuple[Path, Path]:
    return make_clip(tmp_path / "ir.mkv", gray=True), make_clip(tmp_path / "vis.mkv", seed=1)


def test_lossless_round_trip_equals_fusing_each_frame(clips, tmp_path: Path):
    ir, vis = clips
    out = fuse_video(ir=ir, vis=vis, out=tmp_path / "out.mkv", model="average", device="cpu", codec="ffv1", progress=False)
    info = probe(out)
    assert (info.frames, info.rate, info.width, info.height) == (FRAMES, Fraction(10), WIDTH, HEIGHT)
    model = create_model("average")
    outputs = list(read_frames(out))
    assert len(outputs) == FRAMES
    for ir_frame, vis_frame, fused in zip(read_frames(ir), read_frames(vis), outputs):
        np.testing.assert_array_equal(fused, fuse_arrays(model, ir=ir_frame, vis=vis_frame))


def test_cli_fuses_mp4_with_progress_bar(tmp_path: Path, capsys):
    ir = make_clip(tmp_path / "ir.mp4", gray=True, codec=None)
    vis = make_clip(tmp_path / "vis.mp4", seed=1, codec=None)
    out = tmp_path / "fused.mp4"
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--model", "laplacian"]) == 0
    captured = capsys.readouterr()
    assert f"{FRAMES}/{FRAMES}" in captured.err  # tqdm's bar
    info = probe(out)
    assert (info.frames, info.rate, info.width, info.height) == (FRAMES, Fraction(10), WIDTH, HEIGHT)
    # H.264 is lossy: compare loosely with fusing the decoded frames
    model = create_model("laplacian")
    for ir_frame, vis_frame, fused in zip(read_frames(ir), read_frames(vis), read_frames(out)):
        expected = fuse_arrays(model, ir=ir_frame, vis=vis_frame).astype(float)
        assert np.abs(fused.astype(float) - expected).mean() < 6


def test_different_frame_counts_stop_at_the_shorter_and_say_so(tmp_path: Path, capsys):
    ir = make_clip(tmp_path / "ir.mkv", frames=4, gray=True)
    vis = make_clip(tmp_path / "vis.mkv", frames=6, seed=1)
    report = fuse_video(ir=ir, vis=vis, out=tmp_path / "out.mkv", model="average", codec="ffv1", progress=False)
    assert report.frames == 4 and probe(report.path).frames == 4
    assert any(f"stopped at the end of the shorter, {ir}" in note for note in report.notes)
    model = create_model("average")
    for ir_frame, vis_frame, fused in zip(read_frames(ir), read_frames(vis), read_frames(report.path)):
        np.testing.assert_array_equal(fused, fuse_arrays(model, ir=ir_frame, vis=vis_frame))
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(tmp_path / "cli.mkv"), "--model", "average"]) == 0
    captured = capsys.readouterr()
    assert "note: lengths differ" in captured.err and "4 frame(s)" in captured.out


def test_different_frame_rates_pair_each_visible_frame_with_the_nearest_infrared_one(tmp_path: Path, capsys):
    ir = make_clip(tmp_path / "ir.mkv", frames=5, rate=10, gray=True)  # 0.5 s
    vis = make_clip(tmp_path / "vis.mkv", frames=10, rate=20, seed=1)  # 0.5 s
    report = fuse_video(ir=ir, vis=vis, out=tmp_path / "out.mkv", model="average", codec="ffv1", progress=False)
    info = probe(report.path)
    assert (report.frames, info.frames, info.rate) == (10, 10, Fraction(20))
    assert any("nearest in time, at 20 fps" in note for note in report.notes)
    ir_frames, model = list(read_frames(ir)), create_model("average")
    for k, (vis_frame, fused) in enumerate(zip(read_frames(vis), read_frames(report.path))):
        nearest = min(range(5), key=lambda j: (abs(j / 10 - k / 20), -j))  # a tie goes to the later frame
        np.testing.assert_array_equal(fused, fuse_arrays(model, ir=ir_frames[nearest], vis=vis_frame))


def test_existing_output_is_kept_without_overwrite(clips, tmp_path: Path, capsys):
    ir, vis = clips
    out = tmp_path / "out.mkv"
    out.write_bytes(b"keep me")
    args = ["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--model", "average"]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(args + ["--overwrite"]) == 0
    assert probe(out).frames == FRAMES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir.mkv", "out.mkv", "vis.mkv"]  # no temporary left


def test_failure_midway_leaves_no_partial_output(tmp_path: Path):
    ir = make_clip(tmp_path / "ir.mkv")

    class Broken(nn.Module):
        calls = 0

        def forward(self, *, ir, vis):
            Broken.calls += 1
            if Broken.calls == 3:
                raise RuntimeError("boom")
            return ir

    with pytest.raises(RuntimeError, match="boom"):
        fuse_video(ir=ir, vis=ir, out=tmp_path / "out.mkv", model=Broken(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir.mkv"]


def test_unreadable_video_names_the_file(tmp_path: Path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VideoError, match=str(bad)):
        probe(bad)


def test_video_hands_ir_frames_as_ir(clips, tmp_path: Path):
    class ReturnsIr(nn.Module):
        def forward(self, *, ir, vis):
            return ir

    ir, vis = clips
    out = fuse_video(ir=ir, vis=vis, out=tmp_path / "out.mkv", model=ReturnsIr(), device="cpu", codec="ffv1",
                     color="gray", progress=False)
    for ir_frame, fused in zip(read_frames(ir), read_frames(out)):
        np.testing.assert_array_equal(fused, ir_frame)


def test_batched_video_gives_the_same_frames_and_reports_fps(tmp_path: Path):
    torch_model = create_model("cs2fusion")
    size = (256, 272)  # large enough to be batched
    ir = make_clip(tmp_path / "ir.mkv", gray=True, size=size)
    vis = make_clip(tmp_path / "vis.mkv", seed=1, size=size)
    one = fuse_video(ir=ir, vis=vis, out=tmp_path / "one.mkv", model=torch_model, device="cpu", codec="ffv1",
                     batch_size=1, workers=1, progress=False)
    many = fuse_video(ir=ir, vis=vis, out=tmp_path / "many.mkv", model=torch_model, device="cpu", codec="ffv1",
                      batch_size=3, workers=2, progress=False)
    assert one.frames == many.frames == FRAMES and many.frames_per_second > 0 and "batch size 3" in many.setup
    for a, b in zip(read_frames(one), read_frames(many), strict=True):
        np.testing.assert_array_equal(a, b)


def test_output_that_is_an_input_video_is_refused_even_with_overwrite(clips, tmp_path: Path, capsys):
    ir, vis = clips
    before = vis.read_bytes()
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(vis), "--model", "average", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{vis}: is the visible input {vis}" in err and "never replaces an input" in err
    assert vis.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["ir.mkv", "vis.mkv"]


def test_image_sequences_are_fused_into_a_video(clips, tmp_path: Path, capsys):
    """Two folders of frames (a camera that writes one image per frame) and a video output."""
    from contrafuse.io import write_image

    ir, vis = clips
    for index, (a, b) in enumerate(zip(read_frames(ir), read_frames(vis))):
        write_image(tmp_path / "ir_seq" / f"frame_{index:04d}.png", a[..., 0])
        write_image(tmp_path / "vis_seq" / f"cam2_{index:04d}.png", b)  # other names: paired by order
    out = tmp_path / "seq.mkv"
    report = fuse_video(ir=tmp_path / "ir_seq", vis=tmp_path / "vis_seq", out=out, model="average", codec="ffv1",
                        fps=10, progress=False)
    info = probe(out)
    assert (report.frames, info.frames, info.rate) == (FRAMES, FRAMES, Fraction(10))
    model = create_model("average")
    for ir_frame, vis_frame, fused in zip(read_frames(ir), read_frames(vis), read_frames(out)):
        np.testing.assert_array_equal(fused, fuse_arrays(model, ir=ir_frame, vis=vis_frame))
    assert main(["fuse", "--ir", str(tmp_path / "ir_seq"), "--vis", str(tmp_path / "vis_seq"), "--out",
                 str(tmp_path / "cli.mp4"), "--model", "average", "--fps", "12.5"]) == 0
    assert probe(tmp_path / "cli.mp4").rate == Fraction(25, 2)
