"""Frame-by-frame fusion of an infrared video with a visible video (PyAV, optional extra ``video``).

The two videos must have the same number of frames and the same frame rate; frames are
paired in order and each pair goes through the image pipeline (the same preparation, model
call and colour handling as :func:`contrafuse.fusion.fuse_arrays`). Decoding (a background
thread), fusing (``options.batch_size`` consecutive frames per model call) and encoding (one
writer thread, in frame order) overlap; at full precision on a CPU the frames are the same as
fusing one at a time.

A clip holds one infrared window (``ir_range``, :mod:`contrafuse.thermal`), computed on its first
frame, so that brightness does not pump from frame to frame (give ``LOW:HIGH`` when the first
frame is not representative). With ``align`` the pair is registered on the first frame and that
transform is applied to every frame; ``align_every=N`` re-estimates every N frames, each estimate
starting from the previous one. A frame that cannot be registered stops the run with a
:class:`~contrafuse.errors.RegistrationError` naming the frame. The output keeps the frame rate, is written to a temporary file beside
the target and renamed into place, never replaces an existing file unless ``overwrite``, and
never replaces one of the input videos.
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .atomic import InputGuard, check_writable, partial_path, publish
from .errors import ContrafuseError, PairError
from .models import DEFAULT_MODEL
from .options import FuseOptions
from .pipeline import prefetched
from .preparation import PreparedPair, prepare_pair
from .registration import Registration
from .session import Fuser, ModelLike
from .thermal import IrRangeError, resolve

# Encoder per container when none is named: H.264 where the container takes it.
DEFAULT_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "mpeg4", ".webm": "libvpx-vp9"}

LOSSLESS_CODECS = ("ffv1", "png", "rawvideo", "utvideo", "libx264rgb")


class VideoError(ContrafuseError):
    """A video cannot be read or written, or two videos do not fit together."""


@dataclass(frozen=True)
class VideoInfo:
    """Frame count, frame rate and size of a video's first video stream."""

    path: Path
    frames: int
    rate: Fraction
    width: int
    height: int


def _av():
    try:
        import av
    except ImportError:
        raise ContrafuseError("video fusion needs PyAV: pip install 'contrafuse[video]'") from None
    return av


def _open(path: Path):
    av = _av()
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: cannot open video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count (counted by demuxing when the header does not say), rate and size."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise VideoError(f"{path}: frame rate unknown")
        return VideoInfo(path, int(frames), Fraction(rate), stream.codec_context.width, stream.codec_context.height)
    finally:
        container.close()


def check_compatible(ir: VideoInfo, vis: VideoInfo) -> None:
    """Raise :class:`VideoError` naming both files when frame counts or rates differ."""
    if ir.frames != vis.frames:
        raise VideoError(f"frame counts differ: {ir.path} has {ir.frames} frames, {vis.path} has {vis.frames}")
    if ir.rate != vis.rate:
        raise VideoError(f"frame rates differ: {ir.path} runs at {float(ir.rate):g} fps, {vis.path} at {float(vis.rate):g} fps")


def read_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decoded frames of the first video stream as ``uint8`` RGB ``(H, W, 3)``."""
    path = Path(path)
    container = _open(path)
    try:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")
    except _av().FFmpegError as exc:
        raise VideoError(f"{path}: cannot decode video ({exc})") from None
    finally:
        container.close()


class VideoWriter:
    """Encode ``uint8`` RGB frames at a fixed rate into a temporary file, published on :meth:`close`."""

    def __init__(self, path: Path, rate: Fraction, width: int, height: int, codec: str | None = None, overwrite: bool = False):
        av = _av()
        self.path, self.overwrite = path, overwrite
        check_writable(path, overwrite=overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.temp = partial_path(path)
        codec = codec or DEFAULT_CODECS.get(path.suffix.lower(), "libx264")
        try:
            self.container = av.open(str(self.temp), mode="w")
            self.stream = self.container.add_stream(codec, rate=rate)
        except (av.FFmpegError, ValueError) as exc:
            self.temp.unlink(missing_ok=True)
            raise VideoError(f"{path}: cannot write with codec {codec} ({exc})") from None
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = _pixel_format(self.stream, width, height)

    def write(self, rgb: np.ndarray) -> None:
        frame = _av().VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def close(self) -> Path:
        """Flush the encoder and move the file into place."""
        try:
            self.container.mux(self.stream.encode(None))
            self.container.close()
            publish(self.temp, self.path, overwrite=self.overwrite)
        finally:
            self.temp.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        """Drop the partial output."""
        try:
            self.container.close()
        finally:
            self.temp.unlink(missing_ok=True)


def _pixel_format(stream, width: int, height: int) -> str:
    """RGB for lossless codecs (exact frames); else yuv420p where an even size allows it (plays everywhere)."""
    formats = [f.name for f in (stream.codec_context.codec.video_formats or [])]
    rgb_first = stream.codec_context.codec.name in LOSSLESS_CODECS
    if not rgb_first and "yuv420p" in formats and width % 2 == 0 and height % 2 == 0:
        return "yuv420p"
    for preferred in ("rgb24", "bgr0", "gbrp", "yuv444p") if rgb_first else ("yuv444p", "rgb24", "bgr0", "gbrp"):
        if preferred in formats:
            return preferred
    return formats[0] if formats else "yuv420p"


class ClipPreparation:
    """Prepares the frames of one clip in order, holding what must not change from frame to frame:
    the infrared window (of the first frame) and the registration (of the first frame, or renewed
    every ``options.align_every`` frames). Called from one reader thread, frame after frame."""

    def __init__(self, options: FuseOptions, ir: Path, vis: Path) -> None:
        self.options, self.ir, self.vis = options, ir, vis
        self.registration: Registration | None = options.transform

    def names(self, index: int) -> tuple[str, str]:
        return f"{self.ir} frame {index}", f"{self.vis} frame {index}"

    def prepare(self, index: int, ir_frame: np.ndarray, vis_frame: np.ndarray) -> PreparedPair:
        """The :class:`PreparedPair` of frame ``index`` (frames must come in order from 0)."""
        names = self.names(index)
        if index == 0:
            self.hold_window(ir_frame, names[0])
        estimates = self.estimates_at(index)
        try:
            prepared = prepare_pair(ir=ir_frame, vis=vis_frame, options=self.options, names=names,
                                    registration=None if estimates else self.registration,
                                    initial=self.registration if estimates else None)
        except PairError as exc:
            raise VideoError(str(exc)) from None
        self.registration = prepared.registration
        return prepared

    def hold_window(self, ir_frame: np.ndarray, name: str) -> None:
        """Fix the infrared window to the one of the first frame."""
        try:
            self.options = self.options.with_values(ir_range=resolve(ir_frame, self.options.ir_range))
        except IrRangeError as exc:
            raise VideoError(f"{name}: {exc}") from None

    def estimates_at(self, index: int) -> bool:
        """True for the frames whose registration is estimated: the first, then every ``align_every``."""
        if self.options.align == "none":
            return False
        every = self.options.align_every
        return index == 0 or (every > 0 and index % every == 0)


@dataclass(frozen=True)
class VideoReport:
    """A fused video: its path (the report is usable as one), frame count, wall time and setup."""

    path: Path
    frames: int
    seconds: float
    setup: str = ""

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def __fspath__(self) -> str:
        return str(self.path)


def fuse_video(
    *,
    ir: str | os.PathLike,
    vis: str | os.PathLike,
    out: str | os.PathLike,
    model: ModelLike = DEFAULT_MODEL,
    weights: str | os.PathLike | None = "default",
    device: str | torch.device = "auto",
    options: FuseOptions | None = None,
    overwrite: bool = False,
    codec: str | None = None,
    progress: bool = True,
    model_options: Mapping[str, Any] | None = None,
    **option_values: Any,
) -> VideoReport:
    """Fuse two videos frame by frame into ``out``.

    Args:
        ir, vis: the infrared and visible videos (same frame count and rate).
        out: output video; the container follows the suffix, the codec is ``codec`` or
            :data:`DEFAULT_CODECS` for that suffix (``ffv1`` in ``.mkv`` is lossless). It may
            not be one of the inputs, whatever ``overwrite`` says.
        model, weights, device, options, model_options, option_values: as for :func:`contrafuse.fuse`
            (``batch_size``: consecutive frames per model call; ``ir_range``: one window per
            clip, from the first frame; ``align``: estimated on the first frame, or every
            ``align_every`` frames; ``transform``: applied to every frame).

    Returns:
        A :class:`VideoReport` (path, frames, seconds, frames per second); it is a path-like.
    """
    fuser = Fuser(model, weights=weights, device=device, options=options, model_options=model_options, **option_values)
    return run_video(fuser, ir=ir, vis=vis, out=out, overwrite=overwrite, codec=codec, progress=progress)


def run_video(fuser: Fuser, *, ir: str | os.PathLike, vis: str | os.PathLike, out: str | os.PathLike,
              overwrite: bool = False, codec: str | None = None, progress: bool = True) -> VideoReport:
    """Fuse two videos frame by frame into ``out`` with a fusing session (see :func:`fuse_video`)."""
    options = fuser.options
    out = Path(out)
    InputGuard([("infrared input", Path(ir)), ("visible input", Path(vis))]).check(out)
    ir_info, vis_info = probe(ir), probe(vis)
    check_compatible(ir_info, vis_info)
    frame = ir_info if options.aligns and options.warp_direction == "vis_to_ir" else vis_info  # the output's frame
    writer = VideoWriter(out, vis_info.rate, frame.width, frame.height, codec, overwrite)

    clip = ClipPreparation(options, Path(ir), Path(vis))

    def load(frame: tuple[int, np.ndarray, np.ndarray]) -> PreparedPair:
        if frame[0] == 0:  # the clip's first frame stands for the clip
            fuser.input_checks.check(ir=frame[1], vis=frame[2], names=clip.names(0))
        return clip.prepare(*frame)

    def store(frame: tuple[int, np.ndarray, np.ndarray], prepared: PreparedPair, fused: np.ndarray) -> None:
        pixels = fuser.finish(prepared, fused)
        writer.write(np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels)

    start = time.perf_counter()
    frames = prefetched((index, a, b) for index, (a, b) in enumerate(zip(read_frames(ir), read_frames(vis))))
    try:
        count = len(fuser.run_jobs(frames, load=load, store=store, progress=progress, ordered=True, total=vis_info.frames))
    except BaseException:
        writer.abort()
        raise
    finally:
        frames.close()  # stops the decoding thread
    path = writer.close()
    return VideoReport(path, count, time.perf_counter() - start, fuser.describe())
