"""Frame-by-frame fusion of an infrared video with a visible video (PyAV, optional extra ``video``).

Frames are paired in order when the two videos run at the same frame rate, and by time when
they do not: each visible frame goes with the infrared frame nearest to it in time (times counted
from each stream's first frame), and the output runs at the visible video's rate. When one video
is longer, the run stops at the end of the shorter and the report says so
(:attr:`VideoReport.notes`). Each pair goes through the image pipeline (the same preparation, model
call and colour handling as :func:`contrafuse.fusion.fuse_arrays`). Decoding (a background
thread), fusing (``options.batch_size`` consecutive frames per model call) and encoding (one
writer thread, in frame order) overlap; at full precision on a CPU the frames are the same as
fusing one at a time.

A clip holds one infrared window (``ir_range``, :mod:`contrafuse.thermal`), computed on its first
frame, so that brightness does not pump from frame to frame (give ``LOW:HIGH`` when the first
frame is not representative). With ``align`` the pair is registered on the first frame and that
transform is applied to every frame; ``align_every=N`` re-estimates every N frames, each estimate
starting from the previous one. When the first frame cannot be registered the run stops with a
:class:`~contrafuse.errors.RegistrationError` naming the frame (nothing is fused unaligned); when a
later re-estimate is refused, the last transform that passed the checks is kept for those frames
and the report lists the frame and the reason (:attr:`VideoReport.kept`). The output keeps the frame rate, is written to a temporary file beside
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
from .errors import ContrafuseError, PairError, RegistrationError
from .io import list_images, read_image
from .models import DEFAULT_MODEL
from .options import FuseOptions
from .pipeline import prefetched
from .preparation import PreparedPair, prepare_pair
from .registration import Registration
from .session import Fuser, ModelLike
from .thermal import IrRangeError, resolve

DEFAULT_SEQUENCE_FPS = 25.0
"""Frame rate of an image-sequence folder given as a video input, unless ``fps`` says otherwise."""
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


def sequence_frames(folder: Path) -> list[Path]:
    """The image files of an image-sequence folder, in name order (its frame order)."""
    try:
        frames = [folder / path.name for path in sorted(list_images(folder).values(), key=lambda path: path.name)]
    except PairError as exc:
        raise VideoError(str(exc)) from None
    if not frames:
        raise VideoError(f"{folder}: an image sequence folder without images")
    return frames


def probe(path: str | os.PathLike, fps: float = DEFAULT_SEQUENCE_FPS) -> VideoInfo:
    """Frame count (counted by demuxing when the header does not say), rate and size; for an
    image-sequence folder, its image count, ``fps`` and its first image's size."""
    path = Path(path)
    if path.is_dir():
        frames = sequence_frames(path)
        height, width = read_image(frames[0]).shape[:2]
        return VideoInfo(path, len(frames), Fraction(fps).limit_denominator(1001), width, height)
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


def pairing_notes(ir: VideoInfo, vis: VideoInfo) -> list[str]:
    """What the run does about two videos that do not match frame for frame (nothing when they do)."""
    notes = []
    if ir.rate != vis.rate:
        notes.append(f"frame rates differ ({ir.path} {float(ir.rate):g} fps, {vis.path} {float(vis.rate):g} fps): "
                     f"each visible frame is fused with the infrared frame nearest in time, at {float(vis.rate):g} fps")
    ir_seconds, vis_seconds = ir.frames / ir.rate, vis.frames / vis.rate
    if ir_seconds != vis_seconds:
        shorter = ir if ir_seconds < vis_seconds else vis
        notes.append(f"lengths differ ({ir.path} {ir.frames} frames, {vis.path} {vis.frames} frames): stopped at the end "
                     f"of the shorter, {shorter.path}")
    return notes


def read_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decoded frames of the first video stream as ``uint8`` RGB ``(H, W, 3)``."""
    for _, pixels in read_timed_frames(path):
        yield pixels


def read_timed_frames(path: str | os.PathLike, fps: float = DEFAULT_SEQUENCE_FPS) -> Iterator[tuple[float, np.ndarray]]:
    """``(seconds since the first frame, uint8 RGB (H, W, 3))`` for each frame of the first video stream;
    for an image-sequence folder, its images as read (any depth) at ``fps``."""
    path = Path(path)
    if path.is_dir():
        for index, frame in enumerate(sequence_frames(path)):
            yield index / fps, read_image(frame)
        return
    container = _open(path)
    try:
        stream = container.streams.video[0]
        first = None
        for index, frame in enumerate(container.decode(video=0)):
            at = frame.time if frame.time is not None else index / float(stream.average_rate or 1)
            first = at if first is None else first
            yield at - first, frame.to_ndarray(format="rgb24")
    except _av().FFmpegError as exc:
        raise VideoError(f"{path}: cannot decode video ({exc})") from None
    finally:
        container.close()


def paired_frames(ir: Iterator[tuple[float, np.ndarray]], vis: Iterator[tuple[float, np.ndarray]],
                  ir_period: float | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(ir, vis)`` frames until either stream ends: in order, or, given the infrared frame period
    in seconds, each visible frame with the infrared frame nearest to it in time (a visible frame
    more than one period past the last infrared frame ends the pairing)."""
    if ir_period is None:
        for (_, a), (_, b) in zip(ir, vis):
            yield a, b
        return
    current, upcoming = next(ir, None), next(ir, None)
    for at, pixels in vis:
        if current is None:
            return
        while upcoming is not None and abs(upcoming[0] - at) <= abs(current[0] - at):
            current, upcoming = upcoming, next(ir, None)
        if upcoming is None and at - current[0] > ir_period:
            return
        yield current[1], pixels


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
        self.estimated: list[tuple[int, float]] = []  # (frame, confidence) of each estimate applied
        self.kept: list[tuple[int, str]] = []  # (frame, why) where a refused re-estimate kept the last transform

    def names(self, index: int) -> tuple[str, str]:
        return f"{self.ir} frame {index}", f"{self.vis} frame {index}"

    def prepare(self, index: int, ir_frame: np.ndarray, vis_frame: np.ndarray) -> PreparedPair:
        """The :class:`PreparedPair` of frame ``index`` (frames must come in order from 0)."""
        names = self.names(index)
        if index == 0:
            self.hold_window(ir_frame, names[0])
        estimates = self.estimates_at(index)
        try:
            try:
                prepared = prepare_pair(ir=ir_frame, vis=vis_frame, options=self.options, names=names,
                                        registration=None if estimates else self.registration,
                                        initial=self.registration if estimates else None)
            except RegistrationError as exc:
                if self.registration is None:  # nothing good to fall back on: never fused unaligned
                    raise
                self.kept.append((index, exc.problem))
                prepared = prepare_pair(ir=ir_frame, vis=vis_frame, options=self.options, names=names,
                                        registration=self.registration)
                estimates = False
        except PairError as exc:
            raise VideoError(str(exc)) from None
        if estimates:
            self.estimated.append((index, prepared.registration.confidence))
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
    """A fused video: its path (the report is usable as one), frame count, wall time and setup.

    ``notes``: how the two videos were paired when they do not match frame for frame (rates,
    lengths); ``estimated``: ``(frame, confidence)`` of each registration estimate applied (with
    ``align``); ``kept``: ``(frame, reason)`` where a re-estimate was refused and the last good
    transform kept.
    """

    path: Path
    frames: int
    seconds: float
    setup: str = ""
    notes: tuple[str, ...] = ()
    estimated: tuple[tuple[int, float], ...] = ()
    kept: tuple[tuple[int, str], ...] = ()

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
    fps: float = DEFAULT_SEQUENCE_FPS,
    **option_values: Any,
) -> VideoReport:
    """Fuse two videos frame by frame into ``out``.

    Args:
        ir, vis: the infrared and visible videos (paired in order at equal rates, else by time;
            the run ends with the shorter, see the module docstring), or image-sequence folders
            (their images in name order, at ``fps`` frames per second).
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
    return run_video(fuser, ir=ir, vis=vis, out=out, overwrite=overwrite, codec=codec, progress=progress, fps=fps)


def run_video(fuser: Fuser, *, ir: str | os.PathLike, vis: str | os.PathLike, out: str | os.PathLike,
              overwrite: bool = False, codec: str | None = None, progress: bool = True,
              fps: float = DEFAULT_SEQUENCE_FPS) -> VideoReport:
    """Fuse two videos frame by frame into ``out`` with a fusing session (see :func:`fuse_video`)."""
    options = fuser.options
    out = Path(out)
    InputGuard([("infrared input", Path(ir)), ("visible input", Path(vis))]).check(out)
    if fps <= 0:
        raise VideoError(f"fps must be positive, got {fps}")
    ir_info, vis_info = probe(ir, fps), probe(vis, fps)
    notes = pairing_notes(ir_info, vis_info)
    frame = ir_info if options.aligns and options.warp_direction == "vis_to_ir" else vis_info  # the output's frame
    writer = VideoWriter(out, vis_info.rate, frame.width, frame.height, codec, overwrite)

    clip = ClipPreparation(options, Path(ir), Path(vis))

    def load(frame: tuple[int, np.ndarray, np.ndarray]) -> PreparedPair:
        if frame[0] == 0:  # the clip's first frame stands for the clip
            fuser.input_checks.check(ir=frame[1], vis=frame[2], names=clip.names(0))
        return clip.prepare(*frame)

    def store(frame: tuple[int, np.ndarray, np.ndarray], prepared: PreparedPair, fused: np.ndarray) -> None:
        pixels = fuser.finish(prepared, fused)
        if pixels.dtype == np.uint16:  # a 16-bit image sequence: video frames are 8-bit
            pixels = (pixels >> 8).astype(np.uint8)
        writer.write(np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels)

    start = time.perf_counter()
    ir_period = None if ir_info.rate == vis_info.rate else float(1 / ir_info.rate)
    pairs = paired_frames(read_timed_frames(ir, fps), read_timed_frames(vis, fps), ir_period)
    frames = prefetched((index, a, b) for index, (a, b) in enumerate(pairs))
    total = min(vis_info.frames, int(np.ceil(ir_info.frames / ir_info.rate * vis_info.rate)))
    try:
        count = len(fuser.run_jobs(frames, load=load, store=store, progress=progress, ordered=True, total=total))
    except BaseException:
        writer.abort()
        raise
    finally:
        frames.close()  # stops the decoding thread
    path = writer.close()
    return VideoReport(path, count, time.perf_counter() - start, fuser.describe(), tuple(notes), tuple(clip.estimated),
                       tuple(clip.kept))
