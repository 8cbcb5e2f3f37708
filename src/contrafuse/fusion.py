"""The fusing pipeline: read a pair, split luma and chroma, fuse the luma, put the colour back.

Colour rule: the chroma comes from the visible image when it is colour; otherwise from the
infrared-slot image when that is colour (the pseudo-colour PET/SPECT image of a medical pair);
otherwise the output is gray. A pseudo-colour chroma is fitted into the RGB gamut keeping its
hue (:class:`Gamut`). ``Color.GRAY`` forces gray output, ``Color.COLOR`` forces three
channels. Outputs are 16-bit when either input is.

:class:`FuseOptions` is the one set of pipeline settings shared by single pairs, folders,
videos and benchmarks.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .color import luma01, pixels01, rgb_to_ycbcr, ycbcr_to_rgb, ycbcr_to_rgb_in_gamut
from .devices import resolve_device
from .errors import ContrafuseError, PairError
from .io import is_color, pair_folders, read_image, write_image
from .models import DEFAULT_MODEL, create_model

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
    """How a pair is turned into an output image (everything except the model and device).

    Strings are accepted for the enums (``FuseOptions(color="gray")``).
    """

    color: Color = Color.AUTO
    rounding: Rounding = Rounding.ROUND
    gamut: Gamut = Gamut.AUTO
    resize: bool = False  # resample the infrared image to the visible one's size when they differ

    def __post_init__(self) -> None:
        object.__setattr__(self, "color", _choice(Color, self.color, "color"))
        object.__setattr__(self, "rounding", _choice(Rounding, self.rounding, "rounding"))
        object.__setattr__(self, "gamut", _choice(Gamut, self.gamut, "gamut"))

    def with_values(self, **values: Any) -> "FuseOptions":
        """A copy with some fields changed (unknown names are an error)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown fuse option(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **values)


def resolve_options(options: FuseOptions | None, values: dict[str, Any]) -> FuseOptions:
    """``options`` (default :class:`FuseOptions`) with keyword ``values`` applied."""
    return (options or FuseOptions()).with_values(**values)


def as_array(image: ImageLike, name: str = "image") -> tuple[np.ndarray, str]:
    """An image argument (path, array or PIL image) as a pixel array, with a name for messages."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image), str(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB") if image.mode not in ("L", "I;16", "RGB") else image)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise PairError(f"{name}: expected an (H, W) or (H, W, 3) image, got shape {array.shape}")
    if array.dtype not in (np.uint8, np.uint16):
        raise PairError(f"{name}: expected uint8 or uint16 pixels, got {array.dtype}")
    if array.size == 0:
        raise PairError(f"{name}: image is empty")
    return array, name


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


@torch.inference_mode()
def fuse_luma(model: nn.Module, *, ir: np.ndarray, vis: np.ndarray, device: torch.device) -> np.ndarray:
    """Fuse two ``(H, W)`` float luma arrays in [0, 1] with a registered model; float64 out.

    Calls the model's ``fuse`` when it has one (the registry's inference protocol), else its
    ``forward``.
    """
    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None].to(device)  # noqa: E731
    run = getattr(model, "fuse", None) or model
    return run(ir=to_tensor(ir), vis=to_tensor(vis))[0, 0].double().cpu().numpy()


def fuse_arrays(
    model: nn.Module,
    *,
    ir: np.ndarray,
    vis: np.ndarray,
    options: FuseOptions = FuseOptions(),
    device: torch.device = torch.device("cpu"),
    names: tuple[str, str] = ("infrared image", "visible image"),
) -> np.ndarray:
    """Fuse one pair of pixel arrays; returns ``uint8``/``uint16`` gray or RGB pixels.

    ``names`` (infrared, visible) name the inputs in error messages.
    """
    shape = vis.shape[:2]
    if ir.shape[:2] != shape and not options.resize:
        raise PairError(
            f"sizes differ: {names[0]} is {ir.shape[1]}x{ir.shape[0]}, {names[1]} is {shape[1]}x{shape[0]} "
            "(width x height); pass resize=True / --resize to resample the infrared image"
        )
    ir_y = luma01(ir)
    if ir.shape[:2] != shape:
        ir_y, ir = _resize01(ir_y, shape), _resize_pixels(ir, shape)
    fused = fuse_luma(model, ir=ir_y, vis=luma01(vis), device=device)
    full_scale = 65535 if np.uint16 in (ir.dtype, vis.dtype) else 255
    source = _chroma_source(ir, vis)
    if options.color is Color.GRAY or (options.color is Color.AUTO and source is None):
        return quantise(fused, full_scale, options.rounding)
    if source is None:
        return quantise(np.repeat(fused[..., None], 3, axis=2), full_scale, options.rounding)
    _, cb, cr = rgb_to_ycbcr(pixels01(source))
    keep_hue = options.gamut is Gamut.HUE or (options.gamut is Gamut.AUTO and source is ir)
    rgb = ycbcr_to_rgb_in_gamut(fused, cb, cr) if keep_hue else ycbcr_to_rgb(fused, cb, cr)
    return quantise(rgb, full_scale, options.rounding)


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
        ir, vis: file paths, ``uint8``/``uint16`` arrays or PIL images of the same size.
        model: a registered model name (see :func:`contrafuse.list_models`), a module, or an
            ``.onnx`` file from ``contrafuse export`` (run by ONNX Runtime; ``weights`` unused).
        weights: ``"default"`` (shipped), a weights file, or None.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        options: a :class:`FuseOptions`; ``option_values`` (``color="gray"``, ``rounding=``,
            ``resize=``) change single fields of it.

    Returns:
        The fused image as ``(H, W)`` or ``(H, W, 3)`` ``uint8`` (``uint16`` for 16-bit inputs).
    """
    options = resolve_options(options, option_values)
    device = resolve_device(device)
    ir_pixels, ir_name = as_array(ir, "infrared image")
    vis_pixels, vis_name = as_array(vis, "visible image")
    network = load_model(model, weights=weights, device=device)
    return fuse_arrays(network, ir=ir_pixels, vis=vis_pixels, options=options, device=device, names=(ir_name, vis_name))


@dataclass
class BatchReport:
    """What a folder run did: written outputs, failures (name, message), unmatched inputs."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


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
    suffix: str = ".png",
    progress: bool = True,
    **option_values: Any,
) -> BatchReport:
    """Fuse every pair of the folders ``ir`` and ``vis`` (matched by file stem) into ``out/<stem><suffix>``.

    A bad pair is recorded in the report and the others still complete.
    """
    from tqdm import tqdm

    options = resolve_options(options, option_values)
    device = resolve_device(device)
    network = load_model(model, weights=weights, device=device)
    pairs, unmatched = pair_folders(ir=ir, vis=vis)
    report = BatchReport(unmatched=unmatched)
    for pair in tqdm(pairs, desc="fusing", unit="pair", disable=not progress):
        try:
            fused = fuse_arrays(network, ir=read_image(pair.ir), vis=read_image(pair.vis), options=options,
                                device=device, names=(str(pair.ir), str(pair.vis)))
            report.written.append(write_image(Path(out) / f"{pair.name}{suffix}", fused, overwrite=overwrite))
        except ContrafuseError as exc:
            report.failed.append((pair.name, str(exc)))
    return report
