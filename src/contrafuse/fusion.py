"""The fusing pipeline: read a pair, split luma and chroma, fuse the luma, put the colour back.

Colour rule: the chroma comes from the visible image when it is colour; otherwise from the
infrared-slot image when that is colour (the pseudo-colour PET/SPECT image of a medical pair);
otherwise the output is gray. ``color="gray"`` forces gray output, ``color="color"`` forces
three channels. Outputs are 16-bit when either input is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .color import rgb_to_luma, rgb_to_ycbcr, ycbcr_to_rgb
from .errors import ContrafuseError, PairError
from .io import is_color, match_folders, max_value, read_image, write_image
from .models import DEFAULT_MODEL, create_model

ImageLike = Union[str, os.PathLike, np.ndarray, Image.Image]
COLOR_MODES = ("auto", "gray", "color")
ROUNDING_MODES = ("round", "truncate")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ContrafuseError("--device cuda was asked for, but PyTorch sees no CUDA device")
    return device


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


def _luma01(image: np.ndarray) -> np.ndarray:
    y = rgb_to_luma(image) if image.ndim == 3 else image.astype(np.float64)
    return y / max_value(image)


def _resize01(y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    tensor = torch.from_numpy(y)[None, None]
    return F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()


def _chroma_source(ir: np.ndarray, vis: np.ndarray) -> np.ndarray | None:
    if is_color(vis):
        return vis
    if is_color(ir):
        return ir
    return None


def _quantise(values01: np.ndarray, full_scale: int, rounding: str) -> np.ndarray:
    scaled = np.clip(values01, 0.0, 1.0) * full_scale
    scaled = np.floor(scaled) if rounding == "truncate" else np.rint(scaled)
    return scaled.astype(np.uint16 if full_scale > 255 else np.uint8)


@torch.inference_mode()
def fuse_luma(model: nn.Module, ir: np.ndarray, vis: np.ndarray, device: torch.device) -> np.ndarray:
    """Fuse two ``(H, W)`` float luma arrays in [0, 1] with a registered model; float64 out."""
    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None].to(device)  # noqa: E731
    run = getattr(model, "fuse", None) or model
    return run(to_tensor(ir), to_tensor(vis))[0, 0].double().cpu().numpy()


def fuse_arrays(
    model: nn.Module,
    ir: np.ndarray,
    vis: np.ndarray,
    color: str = "auto",
    rounding: str = "round",
    resize: bool = False,
    device: torch.device = torch.device("cpu"),
    names: tuple[str, str] = ("infrared image", "visible image"),
) -> np.ndarray:
    """Fuse one pair of pixel arrays; returns ``uint8``/``uint16`` gray or RGB pixels."""
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {COLOR_MODES}, got {color!r}")
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    shape = vis.shape[:2]
    if ir.shape[:2] != shape and not resize:
        raise PairError(
            f"sizes differ: {names[0]} is {ir.shape[1]}x{ir.shape[0]}, {names[1]} is {shape[1]}x{shape[0]} "
            "(width x height); pass resize=True / --resize to resample the infrared image"
        )
    ir_y = _luma01(ir)
    if ir.shape[:2] != shape:
        ir_y, ir = _resize01(ir_y, shape), _resize_pixels(ir, shape)
    fused = fuse_luma(model, ir_y, _luma01(vis), device)
    full_scale = 65535 if np.uint16 in (ir.dtype, vis.dtype) else 255
    source = _chroma_source(ir, vis)
    if color == "gray" or (color == "auto" and source is None):
        return _quantise(fused, full_scale, rounding)
    if source is None:
        return _quantise(np.repeat(fused[..., None], 3, axis=2), full_scale, rounding)
    _, cb, cr = rgb_to_ycbcr(source.astype(np.float64) / max_value(source))
    return _quantise(ycbcr_to_rgb(fused, cb, cr), full_scale, rounding)


def _resize_pixels(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest resize of pixels; only used to carry chroma of a resized colour infrared image."""
    rows = np.arange(shape[0]) * image.shape[0] // shape[0]
    cols = np.arange(shape[1]) * image.shape[1] // shape[1]
    return image[rows][:, cols]


def _model(model: str | os.PathLike | nn.Module, weights: str | os.PathLike | None, device: torch.device) -> nn.Module:
    if isinstance(model, nn.Module):
        return model.to(device).eval()
    if str(model).endswith(".onnx"):
        from .export import OnnxModel  # an exported model, run by ONNX Runtime

        return OnnxModel(model, device)
    return create_model(model, weights=weights, device=device)


def fuse(
    ir: ImageLike,
    vis: ImageLike,
    model: str | nn.Module = DEFAULT_MODEL,
    weights: str | os.PathLike | None = "default",
    color: str = "auto",
    rounding: str = "round",
    resize: bool = False,
    device: str | torch.device = "auto",
) -> np.ndarray:
    """Fuse an infrared (or functional) image with a visible (or MRI) image.

    Args:
        ir, vis: file paths, ``uint8``/``uint16`` arrays or PIL images of the same size.
        model: a registered model name (see :func:`contrafuse.list_models`), a module, or an
            ``.onnx`` file from ``contrafuse export`` (run by ONNX Runtime; ``weights`` unused).
        weights: ``"default"`` (shipped), a weights file, or None.
        color: ``"auto"`` keeps colour when an input has it, ``"gray"`` or ``"color"`` force it.
        rounding: ``"round"`` (default) or ``"truncate"`` (the authors' reference code).
        resize: resample the infrared image to the visible one's size when they differ.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        The fused image as ``(H, W)`` or ``(H, W, 3)`` ``uint8`` (``uint16`` for 16-bit inputs).
    """
    device = resolve_device(device)
    ir_pixels, ir_name = as_array(ir, "infrared image")
    vis_pixels, vis_name = as_array(vis, "visible image")
    return fuse_arrays(_model(model, weights, device), ir_pixels, vis_pixels, color, rounding, resize, device, (ir_name, vis_name))


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
    ir_dir: str | os.PathLike,
    vis_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str | nn.Module = DEFAULT_MODEL,
    weights: str | os.PathLike | None = "default",
    color: str = "auto",
    rounding: str = "round",
    resize: bool = False,
    device: str | torch.device = "auto",
    overwrite: bool = False,
    suffix: str = ".png",
    progress: bool = True,
) -> BatchReport:
    """Fuse every pair of two folders matched by file stem into ``out_dir/<stem><suffix>``.

    A bad pair is recorded in the report and the others still complete.
    """
    from tqdm import tqdm

    device = resolve_device(device)
    network = _model(model, weights, device)
    matched = match_folders(ir_dir, vis_dir)
    report = BatchReport(unmatched=matched.only_in_first + matched.only_in_second)
    for stem, ir_path, vis_path in tqdm(matched.pairs, desc="fusing", unit="pair", disable=not progress):
        try:
            fused = fuse_arrays(
                network, read_image(ir_path), read_image(vis_path), color, rounding, resize, device, (str(ir_path), str(vis_path))
            )
            report.written.append(write_image(Path(out_dir) / f"{stem}{suffix}", fused, overwrite=overwrite))
        except ContrafuseError as exc:
            report.failed.append((stem, str(exc)))
    return report
