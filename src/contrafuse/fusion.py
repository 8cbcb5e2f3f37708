"""The fusing pipeline: read a pair, split luma and chroma, fuse the luma, put the colour back.

Colour rule: the chroma comes from the visible image when it is colour; otherwise from the
infrared-slot image when that is colour (the pseudo-colour PET/SPECT image of a medical pair);
otherwise the output is gray. A pseudo-colour chroma is fitted into the RGB gamut keeping its
hue (:class:`Gamut`). ``Color.GRAY`` forces gray output, ``Color.COLOR`` forces three
channels. Outputs are 16-bit when either input is, except that an infrared image windowed to
[0, 1] (:mod:`contrafuse.thermal`: radiometric counts or float temperatures) leaves the depth to
the visible image.

Before the model sees a pair, the infrared luma goes through its window (``ir_range``) and, when
asked (``align`` or ``transform``), the pair is registered (:mod:`contrafuse.alignment`).

:class:`FuseOptions` is the one set of pipeline settings shared by single pairs, folders,
videos and benchmarks.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from collections.abc import Hashable
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .alignment import AlignOptionError, as_registration, check_fits, check_mode, resolve_direction, warp_float
from .atomic import check_writable, remove_stale_partials
from .color import luma01, pixels01, rgb_to_ycbcr, ycbcr_to_rgb, ycbcr_to_rgb_in_gamut
from .devices import resolve_device
from .errors import ContrafuseError, PairError, WriteError
from .io import PairFiles, is_color, pair_folders, read_image, write_image
from .models import DEFAULT_MODEL, create_model
from .pipeline import run_batched
from .registration import Registration, estimate
from .runtime import ModelRunner, Precision, as_precision, intra_op_threads, parallel_layout
from .thermal import IrRange, IrRangeError, parse_ir_range, window, windowed_luma01

ImageLike = Union[str, os.PathLike, np.ndarray, Image.Image]
ModelLike = Union[str, os.PathLike, nn.Module]


class Color(str, Enum):
    """Colour of the output: ``auto`` keeps colour when an input has it."""

    AUTO = "auto"
    GRAY = "gray"
    COLOR = "color"


class Gamut(str, Enum):
    """How a colour that falls outside RGB after the chroma is put back becomes a pixel.

    ``clip`` clips each channel (what the methods' reference code does); ``hue`` scales the
    chroma into range, keeping luma and hue (:func:`~contrafuse.color.ycbcr_to_rgb_in_gamut`);
    ``auto``: ``hue`` when the chroma comes from a pseudo-colour functional image given as
    ``ir`` (its hue encodes the tracer value), ``clip`` when it comes from the visible image.
    """

    AUTO = "auto"
    CLIP = "clip"
    HUE = "hue"


class Rounding(str, Enum):
    """Float to integer: ``round`` to nearest, or ``truncate`` as the authors' reference code."""

    ROUND = "round"
    TRUNCATE = "truncate"


def _choice(enum: type[Enum], value: Any, what: str) -> Any:
    try:
        return enum(value.value if isinstance(value, Enum) else value)
    except ValueError:
        choices = ", ".join(m.value for m in enum)  # type: ignore[attr-defined]
        raise ValueError(f"{what} must be one of {choices}, got {value!r}") from None


@dataclass(frozen=True)
class FuseOptions:
    """How pairs are turned into output images (everything except the model and device).

    Strings are accepted for the enums (``FuseOptions(color="gray", precision="bf16")``).

    * ``color``, ``rounding``, ``resize``: what the output is (see the module docstring).
    * ``precision``: ``None`` (full precision, or an exported file's own), ``"fp32"``,
      ``"fp16"``, ``"bf16"`` (PyTorch autocast) or ``"int8"`` (a quantised ONNX file); see
      :mod:`contrafuse.runtime`.
    * ``batch_size``: same-size pairs per model call in folder, video and bench runs (at full
      precision on a CPU the outputs are byte-identical to one at a time).
    * ``workers``: model calls running at once on a CPU (None: automatic, see
      :func:`contrafuse.runtime.parallel_layout`).
    * ``compile``: run the plain forward through ``torch.compile`` (CUDA; whole images).
    * ``ir_range``: how the infrared image is windowed to [0, 1]: ``auto`` (default), ``full``,
      ``LOW:HIGH`` or ``pLOW:pHIGH`` (:mod:`contrafuse.thermal`; 8-bit and full-range 16-bit
      images are unchanged under ``auto``).
    * ``align``: ``none`` (default: fuse the pair as it is), ``translation``, ``affine`` or
      ``homography``: register each pair first (:mod:`contrafuse.registration`);
      ``transform``: a saved registration (a :class:`~contrafuse.registration.Registration` or
      the JSON file ``contrafuse align`` writes) applied to every pair instead; ``direction``:
      ``ir_to_vis`` (the infrared image is warped into the visible frame; the default) or
      ``vis_to_ir`` (None: the transform's own, else ``ir_to_vis``); ``align_every``: videos
      only, re-estimate every N frames (0, the default: once, on the first frame).
    """

    color: Color = Color.AUTO
    rounding: Rounding = Rounding.ROUND
    gamut: Gamut = Gamut.AUTO
    resize: bool = False  # resample the infrared image to the visible one's size when they differ
    precision: Precision | None = None
    batch_size: int = 1
    workers: int | None = None
    compile: bool = False
    ir_range: IrRange = IrRange()
    align: str = "none"
    transform: Registration | None = None
    direction: str | None = None
    align_every: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ir_range", parse_ir_range(self.ir_range))
        object.__setattr__(self, "align", check_mode(self.align))
        object.__setattr__(self, "transform", as_registration(self.transform))
        if self.direction is not None:
            object.__setattr__(self, "direction", resolve_direction(self.direction, self.transform))
        if self.align != "none" and self.transform is not None:
            raise AlignOptionError(f"align={self.align} and a saved transform contradict each other: estimate, or "
                                   "apply the saved one")
        if int(self.align_every) < 0:
            raise AlignOptionError(f"align_every must be >= 0 (0: once, on the first frame), got {self.align_every}")
        object.__setattr__(self, "color", _choice(Color, self.color, "color"))
        object.__setattr__(self, "rounding", _choice(Rounding, self.rounding, "rounding"))
        object.__setattr__(self, "gamut", _choice(Gamut, self.gamut, "gamut"))
        object.__setattr__(self, "precision", as_precision(self.precision))
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.workers is not None and int(self.workers) < 1:
            raise ValueError(f"workers must be >= 1 (or None for automatic), got {self.workers}")

    @property
    def aligns(self) -> bool:
        """True when pairs are registered before fusing (an ``align`` mode or a ``transform``)."""
        return self.align != "none" or self.transform is not None

    @property
    def warp_direction(self) -> str:
        """``ir_to_vis`` or ``vis_to_ir``: ``direction``, else the transform's, else ``ir_to_vis``."""
        return resolve_direction(self.direction, self.transform)

    def with_values(self, **values: Any) -> "FuseOptions":
        """A copy with some fields changed (unknown names are an error)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown fuse option(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **values)


def resolve_options(options: FuseOptions | None, values: dict[str, Any]) -> FuseOptions:
    """``options`` (default :class:`FuseOptions`) with keyword ``values`` applied."""
    return (options or FuseOptions()).with_values(**values)


def as_array(image: ImageLike, name: str = "image", *, infrared: bool = False) -> tuple[np.ndarray, str]:
    """An image argument (path, array or PIL image) as a pixel array, with a name for messages.

    ``infrared``: float gray pixels (a radiometric image, mode ``F``) are accepted too.
    """
    if isinstance(image, (str, os.PathLike)):
        pixels = read_image(image)
        check_pixels(pixels, str(image), infrared=infrared)
        return pixels, str(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB") if image.mode not in ("L", "I;16", "RGB", "F") else image)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise PairError(f"{name}: expected an (H, W) or (H, W, 3) image, got shape {array.shape}")
    check_pixels(array, name, infrared=infrared)
    if array.size == 0:
        raise PairError(f"{name}: image is empty")
    return array, name


def check_pixels(pixels: np.ndarray, name: str, *, infrared: bool = False) -> None:
    """Raise :class:`~contrafuse.errors.PairError` naming the image unless its pixels are ``uint8`` or
    ``uint16`` (or, for the infrared image, float gray: radiometric temperatures)."""
    if pixels.dtype in (np.uint8, np.uint16):
        return
    if pixels.dtype.kind == "f":
        if not infrared:
            raise PairError(f"{name}: floating-point pixels are only taken for the infrared image (radiometric "
                            "thermal data); save the visible image as 8- or 16-bit")
        if pixels.ndim != 2:
            raise PairError(f"{name}: a floating-point infrared image must be gray (H, W), got shape {pixels.shape}")
        return
    raise PairError(f"{name}: expected uint8 or uint16 pixels{' (or float gray)' if infrared else ''}, got {pixels.dtype}")


def _resize01(y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    tensor = torch.from_numpy(y)[None, None]
    return F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()


def _resize_pixels(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest resize of pixels; only used to carry chroma of a resized colour infrared image."""
    rows = np.arange(shape[0]) * image.shape[0] // shape[0]
    cols = np.arange(shape[1]) * image.shape[1] // shape[1]
    return image[rows][:, cols]


def _chroma_source(ir: np.ndarray, vis: np.ndarray) -> np.ndarray | None:
    if is_color(vis):
        return vis
    if is_color(ir):
        return ir
    return None


def quantise(values01: np.ndarray, full_scale: int, rounding: Rounding) -> np.ndarray:
    """Clip [0, 1] values and map them to ``uint8`` (255) or ``uint16`` (65535) pixels."""
    scaled = np.clip(values01, 0.0, 1.0) * full_scale
    scaled = np.floor(scaled) if rounding is Rounding.TRUNCATE else np.rint(scaled)
    return scaled.astype(np.uint16 if full_scale > 255 else np.uint8)


# Below this size a pair is fused alone: batching small images gains nothing, and oneDNN picks
# some kernels by problem size, so tiny images in a batch can differ in the last float bit.
MIN_BATCH_PIXELS = 256 * 256


@dataclass
class PreparedPair:
    """A pair ready for the model, and what its output needs back.

    ``ir_luma``, ``vis_luma``: ``(H, W)`` float32 in [0, 1] (the infrared one resampled to the
    visible size when asked); ``chroma_source``: the colour image whose chroma the output gets,
    or None; ``full_scale``: 255 or 65535 (16-bit output when an input is 16-bit).
    """

    ir_luma: np.ndarray
    vis_luma: np.ndarray
    chroma_source: np.ndarray | None
    full_scale: int
    chroma_from_ir: bool = False  # pseudo-colour infrared (PET/SPECT): its hue is kept
    name: str = ""  # the pair's name, for timing records

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the output."""
        return self.vis_luma.shape

    def batch_key(self) -> Hashable:
        """Pairs with equal keys may share a model call: same shape, and at least
        :data:`MIN_BATCH_PIXELS` (smaller pairs go alone)."""
        height, width = self.shape
        return self.shape if height * width >= MIN_BATCH_PIXELS else ("alone", id(self))


def prepare_pair(
    *, ir: np.ndarray, vis: np.ndarray, options: FuseOptions = FuseOptions(),
    names: tuple[str, str] = ("infrared image", "visible image"), registration: Registration | None = None,
) -> PreparedPair:
    """Window the infrared luma, register the pair when asked, take the visible luma and note the chroma source.

    ``ir``: ``uint8``/``uint16`` pixels or float gray (radiometric); ``vis``: ``uint8``/``uint16``.
    ``registration``: a transform to apply instead of what ``options`` asks (a video holds one
    over its frames).

    Raises :class:`~contrafuse.errors.PairError` naming both images when the sizes differ and
    neither ``options.resize`` nor an alignment is on, and
    :class:`~contrafuse.errors.RegistrationError` naming the pair when it cannot be registered.
    """
    check_pixels(ir, names[0], infrared=True)
    check_pixels(vis, names[1])
    bounds = infrared_window(ir, options.ir_range, names[0])
    ir_y = luma01(ir) if bounds is None else windowed_luma01(ir, bounds)
    source = _chroma_source(ir, vis)
    chroma_from_ir = source is ir
    # 16-bit output for a 16-bit input, unless that input is an infrared image brought to [0, 1] by a window
    full_scale = 65535 if vis.dtype == np.uint16 or (ir.dtype == np.uint16 and bounds is None) else 255
    if registration is None and options.aligns:
        registration = options.transform or pair_registration(ir=ir, vis=vis, options=options, names=names)
    if registration is not None:
        check_fits(registration, ir_shape=ir.shape, vis_shape=vis.shape, name=pair_name(names))
        if registration.moving_role == "ir":
            ir_y = warp_float(registration, ir_y)
            source = registration.warp(source) if chroma_from_ir else source
        else:
            vis = registration.warp(vis)
            source = vis if source is not None and not chroma_from_ir else source
    elif ir.shape[:2] != vis.shape[:2]:
        shape = vis.shape[:2]
        if not options.resize:
            raise PairError(
                f"sizes differ: {names[0]} is {ir.shape[1]}x{ir.shape[0]}, {names[1]} is {shape[1]}x{shape[0]} "
                "(width x height); pass resize=True / --resize to resample the infrared image, or align=... / "
                "--align MODE to register the pair"
            )
        ir_y = _resize01(ir_y, shape)
        source = _resize_pixels(source, shape) if chroma_from_ir else source
    return PreparedPair(ir_y.astype(np.float32), luma01(vis, np.float32), source, full_scale,
                        chroma_from_ir=chroma_from_ir)


def infrared_window(ir: np.ndarray, spec: IrRange, name: str) -> tuple[float, float] | None:
    """The window of the infrared pixels (:func:`contrafuse.thermal.window`); errors name the image."""
    try:
        return window(ir, spec)
    except IrRangeError as exc:
        raise IrRangeError(f"{name}: {exc}") from None


def pair_name(names: tuple[str, str]) -> str:
    """How messages name a pair: ``"IR + VIS"`` (as ``contrafuse align`` does)."""
    return f"{names[0]} + {names[1]}"


def pair_registration(
    *, ir: np.ndarray, vis: np.ndarray, options: FuseOptions, names: tuple[str, str] = ("infrared image", "visible image"),
    initial: Registration | None = None,
) -> Registration:
    """Register one pair with ``options.align`` and ``options.warp_direction``.

    A windowed infrared image (``options.ir_range``: radiometric counts, float temperatures) is
    registered as its windowed luma; ``initial``: start from this transform (the previous
    estimate of a video). Raises :class:`~contrafuse.errors.RegistrationError` naming the pair.
    """
    bounds = infrared_window(ir, options.ir_range, names[0])
    moving = ir if bounds is None else windowed_luma01(ir, bounds).astype(np.float32)
    return estimate(ir=moving, vis=vis, mode=options.align, direction=options.warp_direction, initial=initial,
                    name=pair_name(names))


def finish_pair(prepared: PreparedPair, fused: np.ndarray, options: FuseOptions = FuseOptions()) -> np.ndarray:
    """The output pixels from the fused ``(H, W)`` luma (float, [0, 1] scale): gray or with the chroma back."""
    source = prepared.chroma_source
    if options.color is Color.GRAY or (options.color is Color.AUTO and source is None):
        return quantise(fused, prepared.full_scale, options.rounding)
    if source is None:
        return quantise(np.repeat(fused[..., None], 3, axis=2), prepared.full_scale, options.rounding)
    _, cb, cr = rgb_to_ycbcr(pixels01(source))
    keep_hue = options.gamut is Gamut.HUE or (options.gamut is Gamut.AUTO and prepared.chroma_from_ir)
    rgb = ycbcr_to_rgb_in_gamut(fused, cb, cr) if keep_hue else ycbcr_to_rgb(fused, cb, cr)
    return quantise(rgb, prepared.full_scale, options.rounding)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def fuse_luma_batch(runner: ModelRunner, *, ir: list[np.ndarray], vis: list[np.ndarray]) -> list[np.ndarray]:
    """Fuse same-size ``(H, W)`` float32 luma arrays in [0, 1] in one model call; float64 ``(H, W)`` each."""
    stacked = [_to_device(np.ascontiguousarray(np.stack(images)[:, None], dtype=np.float32), runner.device) for images in (ir, vis)]
    fused = runner(ir=stacked[0], vis=stacked[1])[:, 0].double().cpu().numpy()
    return list(fused)


def fuse_luma(model: nn.Module | ModelRunner, *, ir: np.ndarray, vis: np.ndarray, device: torch.device) -> np.ndarray:
    """Fuse two ``(H, W)`` float luma arrays in [0, 1] with a model; float64 out.

    Calls the model's ``fuse`` when it has one (the registry's inference protocol), else its
    ``forward``.
    """
    runner = model if isinstance(model, ModelRunner) else ModelRunner(model, device=device)
    return fuse_luma_batch(runner, ir=[np.asarray(ir, np.float32)], vis=[np.asarray(vis, np.float32)])[0]


def fuse_arrays(
    model: nn.Module | ModelRunner,
    *,
    ir: np.ndarray,
    vis: np.ndarray,
    options: FuseOptions = FuseOptions(),
    device: torch.device = torch.device("cpu"),
    names: tuple[str, str] = ("infrared image", "visible image"),
) -> np.ndarray:
    """Fuse one pair of pixel arrays; returns ``uint8``/``uint16`` gray or RGB pixels.

    ``model``: a module (run at ``options.precision``) or a :class:`~contrafuse.runtime.ModelRunner`
    (reuse one for many calls: it holds the compiled forward). ``names`` (infrared, visible)
    name the inputs in error messages.
    """
    prepared = prepare_pair(ir=ir, vis=vis, options=options, names=names)
    runner = model if isinstance(model, ModelRunner) else runner_for(model, device, options)
    fused = fuse_luma_batch(runner, ir=[prepared.ir_luma], vis=[prepared.vis_luma])[0]
    return finish_pair(prepared, fused, options)


def runner_for(network: nn.Module, device: torch.device, options: FuseOptions) -> ModelRunner:
    """A :class:`~contrafuse.runtime.ModelRunner` for ``network`` at the options' precision."""
    return ModelRunner(network, device=device, precision=options.precision, compile=options.compile)


def load_model(model: ModelLike, *, weights: str | os.PathLike | None = "default", device: torch.device) -> nn.Module:
    """A model to fuse with: a module (moved to ``device``, eval mode), a registered name, or an
    exported ``.onnx`` file (run by ONNX Runtime; ``weights`` unused)."""
    if isinstance(model, nn.Module):
        return model.to(device).eval()
    if str(model).endswith(".onnx"):
        from .export import OnnxModel

        return OnnxModel(model, device)
    return create_model(str(model), weights=weights, device=device)


def fuse(
    *,
    ir: ImageLike,
    vis: ImageLike,
    model: ModelLike = DEFAULT_MODEL,
    weights: str | os.PathLike | None = "default",
    device: str | torch.device = "auto",
    options: FuseOptions | None = None,
    **option_values: Any,
) -> np.ndarray:
    """Fuse an infrared (or functional) image with a visible (or MRI) image.

    Args:
        ir, vis: file paths, ``uint8``/``uint16`` arrays or PIL images of the same size (or
            of any sizes with ``align``/``transform``); ``ir`` may also be float gray (a
            radiometric image, or a float TIFF), windowed by ``ir_range``.
        model: a registered model name (see :func:`contrafuse.list_models`), a module, or an
            ``.onnx`` file from ``contrafuse export`` (run by ONNX Runtime; ``weights`` unused).
        weights: ``"default"`` (shipped), a weights file, or None.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        options: a :class:`FuseOptions`; ``option_values`` (``color="gray"``, ``rounding=``,
            ``resize=``, ``precision=``, ``ir_range=``, ``align=``, ``transform=``, ...) change
            single fields of it.

    Returns:
        The fused image as ``(H, W)`` or ``(H, W, 3)`` ``uint8`` (``uint16`` for 16-bit inputs,
        except a windowed infrared image), in the visible image's frame (the infrared's with
        ``direction="vis_to_ir"``).

    Raises:
        RegistrationError: with ``align``, the pair cannot be registered (it is never fused unaligned).
    """
    options = resolve_options(options, option_values)
    device = resolve_device(device)
    ir_pixels, ir_name = as_array(ir, "infrared image", infrared=True)
    vis_pixels, vis_name = as_array(vis, "visible image")
    network = load_model(model, weights=weights, device=device)
    return fuse_arrays(network, ir=ir_pixels, vis=vis_pixels, options=options, device=device, names=(ir_name, vis_name))


class InputGuard:
    """The inputs of a run; refuses an output path that is one of them, whatever the flags.

    ``inputs``: ``(role, path)`` pairs, e.g. ``("infrared input", Path("ir/01.png"))``. Paths
    are compared resolved (links and ``..``), and by file identity when the output exists.
    """

    def __init__(self, inputs: list[tuple[str, Path]]) -> None:
        self.by_path: dict[Path, tuple[str, Path]] = {}
        self.by_identity: dict[tuple[int, int], tuple[str, Path]] = {}
        for role, path in inputs:
            path = Path(path)
            self.by_path[path.resolve()] = (role, path)
            identity = _identity(path)
            if identity is not None:
                self.by_identity[identity] = (role, path)

    def check(self, out: str | os.PathLike) -> None:
        """Raise :class:`~contrafuse.errors.WriteError` naming both paths when ``out`` is an input."""
        found = self.by_path.get(Path(out).resolve())
        identity = _identity(Path(out))
        if found is None and identity is not None:
            found = self.by_identity.get(identity)
        if found is not None:
            role, path = found
            raise WriteError(out, f"is the {role} {path} of this run; an output never replaces an input "
                                  "(choose another output name or folder)")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


@dataclass
class BatchReport:
    """What a folder run did.

    ``written``: outputs, in pair order; ``failed``: (pair name, message); ``unmatched``:
    inputs without a partner; ``skipped``: existing outputs left alone (``skip_existing``);
    ``cleaned``: stale temporary files of earlier runs removed; ``seconds``: wall time of the
    run (model loading excluded); ``setup``: how the model ran (precision, backend, batch size,
    workers).
    """

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    cleaned: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    setup: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def pairs_per_second(self) -> float:
        """Fused pairs per second of wall time (0 when nothing was fused)."""
        return len(self.written) / self.seconds if self.written and self.seconds > 0 else 0.0


@dataclass(frozen=True)
class FolderJob:
    """One pair of a folder run and the file its output goes to."""

    pair: PairFiles
    target: Path


def io_threads() -> int:
    """Reader and writer threads per pipeline: up to 4, no more than the CPUs."""
    return max(1, min(4, os.cpu_count() or 1))


def luma_compute(runner: ModelRunner, on_batch: Any = None) -> Any:
    """The pipeline's compute stage: a batch of :class:`PreparedPair` -> their fused luma.

    ``on_batch(batch, seconds)``, when given, hears the pairs and the wall time of every model call.
    """

    def compute(batch: list[PreparedPair]) -> list[np.ndarray]:
        start = time.perf_counter()
        fused = fuse_luma_batch(runner, ir=[p.ir_luma for p in batch], vis=[p.vis_luma for p in batch])
        if on_batch is not None:
            on_batch(batch, time.perf_counter() - start)
        return fused

    return compute


def fuse_jobs(
    jobs: list[Any],
    runner: ModelRunner,
    options: FuseOptions,
    *,
    load: Any,
    store: Any,
    progress: bool = True,
    desc: str = "fusing",
    on_batch: Any = None,
) -> list[Any]:
    """Run ``jobs`` through the batched pipeline (:func:`contrafuse.pipeline.run_batched`) with ``runner``.

    ``load(job)`` gives a :class:`PreparedPair` (reader threads), ``store(job, prepared,
    fused_luma)`` finishes and writes it (writer threads); same-size pairs are fused
    ``options.batch_size`` at a time on :func:`~contrafuse.runtime.parallel_layout` workers.
    Returns the :class:`~contrafuse.pipeline.Outcome` of every job, in job order.
    """
    from tqdm import tqdm

    workers, threads = parallel_layout(runner, options.workers)
    order = {id(job): index for index, job in enumerate(jobs)}
    outcomes = []
    with intra_op_threads(threads), tqdm(total=len(jobs), desc=desc, unit="pair", disable=not progress, file=sys.stderr) as bar:
        for outcome in run_batched(jobs, load=load, compute=luma_compute(runner, on_batch), store=store,
                                   key=PreparedPair.batch_key, batch_size=options.batch_size, workers=workers,
                                   readers=io_threads(), writers=io_threads()):
            outcomes.append(outcome)
            bar.update(1)
    return sorted(outcomes, key=lambda outcome: order[id(outcome.item)])


def folder_input_guard(pairs: list[PairFiles], unmatched: list[Path], *, ir_folder: Path) -> InputGuard:
    """An :class:`InputGuard` over every file of a folder run, partnered or not."""
    roles = [("infrared input", p.ir) for p in pairs] + [("visible input", p.vis) for p in pairs]
    ir_folder = ir_folder.resolve()
    roles += [("infrared input" if path.parent.resolve() == ir_folder else "visible input", path) for path in unmatched]
    return InputGuard(roles)


def fuse_folders(
    *,
    ir: str | os.PathLike,
    vis: str | os.PathLike,
    out: str | os.PathLike,
    model: ModelLike = DEFAULT_MODEL,
    weights: str | os.PathLike | None = "default",
    device: str | torch.device = "auto",
    options: FuseOptions | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
    suffix: str = ".png",
    progress: bool = True,
    **option_values: Any,
) -> BatchReport:
    """Fuse every pair of the folders ``ir`` and ``vis`` (matched by file stem) into ``out/<stem><suffix>``.

    Reading, fusing and writing overlap (:mod:`contrafuse.pipeline`); same-size pairs are fused
    ``options.batch_size`` at a time. A bad pair (unreadable, sizes differ, output not
    writable, output that would replace an input) is recorded in the report and the others
    still complete. ``skip_existing`` resumes an interrupted run: pairs whose output exists are
    skipped before any work and stale temporary files in ``out`` are removed; it cannot be
    combined with ``overwrite``.
    """
    options = resolve_options(options, option_values)
    if overwrite and skip_existing:
        raise ContrafuseError("overwrite and skip_existing contradict each other (--overwrite replaces existing "
                              "outputs, --skip-existing keeps them); choose one")
    device = resolve_device(device)
    runner = runner_for(load_model(model, weights=weights, device=device), device, options)
    pairs, unmatched = pair_folders(ir=ir, vis=vis)
    out = Path(out)
    report = BatchReport(unmatched=unmatched, cleaned=remove_stale_partials(out) if skip_existing else [])
    jobs = []
    for pair in pairs:
        target = out / f"{pair.name}{suffix}"
        if skip_existing and target.exists():
            report.skipped.append(target)
        else:
            jobs.append(FolderJob(pair, target))
    guard = folder_input_guard(pairs, unmatched, ir_folder=Path(ir))

    def load(job: FolderJob) -> PreparedPair:
        guard.check(job.target)
        check_writable(job.target, overwrite=overwrite)
        names = (str(job.pair.ir), str(job.pair.vis))
        return prepare_pair(ir=read_image(job.pair.ir), vis=read_image(job.pair.vis), options=options, names=names)

    def store(job: FolderJob, prepared: PreparedPair, fused: np.ndarray) -> Path:
        return write_image(job.target, finish_pair(prepared, fused, options), overwrite=overwrite)

    report.setup = f"{runner.describe()}, batch size {options.batch_size}"
    start = time.perf_counter()
    for outcome in fuse_jobs(jobs, runner, options, load=load, store=store, progress=progress):
        if outcome.ok:
            report.written.append(outcome.value)
        else:
            report.failed.append((outcome.item.pair.name, str(outcome.error)))
    report.seconds = time.perf_counter() - start
    return report
