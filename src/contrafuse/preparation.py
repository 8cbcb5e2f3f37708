"""Pair preparation and finishing: pure functions around the model call.

:func:`prepare_pair` turns two pixel arrays into what a fusion model reads (the windowed
infrared luma, registered or resampled into the visible frame, and the visible luma, float32 in
[0, 1]) and notes what the output needs back (the chroma source, the bit depth);
:func:`finish_pair` turns the fused luma into output pixels (gray, or with the chroma back).
Neither holds state or touches a model; :class:`contrafuse.session.Fuser` runs the model between
them.

Colour rule: the chroma comes from the visible image when it is colour; otherwise from the
infrared-slot image when that is colour (the pseudo-colour PET/SPECT image of a medical pair);
otherwise the output is gray. A pseudo-colour chroma is fitted into the RGB gamut keeping its
hue (:class:`~contrafuse.options.Gamut`). ``Color.GRAY`` forces gray output, ``Color.COLOR``
forces three channels. Outputs are 16-bit when either input is, except that an infrared image
windowed to [0, 1] (:mod:`contrafuse.thermal`: radiometric counts or float temperatures) leaves
the depth to the visible image.
"""
from __future__ import annotations

import os
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .alignment import check_fits, warp_float
from .color import luma01, pixels01, rgb_to_ycbcr, ycbcr_to_rgb, ycbcr_to_rgb_in_gamut
from .errors import PairError
from .io import is_color, read_image
from .options import Color, FuseOptions, Gamut, Rounding
from .registration import Registration, estimate
from .thermal import IrRange, IrRangeError, window, windowed_luma01

ImageLike = Union[str, os.PathLike, np.ndarray, Image.Image]


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
    registration: Registration | None = None  # the transform applied, if any

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
    initial: Registration | None = None,
) -> PreparedPair:
    """Window the infrared luma, register the pair when asked, take the visible luma and note the chroma source.

    ``ir``: ``uint8``/``uint16`` pixels or float gray (radiometric); ``vis``: ``uint8``/``uint16``.
    ``registration``: a transform to apply instead of what ``options`` asks (a video holds one
    over its frames); otherwise ``options.transform`` is applied, or with ``options.align`` the
    pair is registered (starting from ``initial``, e.g. a video's previous estimate). The
    transform used is kept in :attr:`PreparedPair.registration`.

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
    if registration is None:
        registration = options.transform
    if registration is None and options.align != "none":
        # a windowed infrared image (radiometric counts, float temperatures) is registered as its windowed luma
        moving = ir if bounds is None else ir_y.astype(np.float32)
        registration = estimate(ir=moving, vis=vis, mode=options.align, direction=options.warp_direction,
                                initial=initial, min_confidence=options.min_confidence, verify=options.verify,
                                verify_below=options.verify_below, fine=options.fine, name=pair_name(names))
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
                        chroma_from_ir=chroma_from_ir, registration=registration)


def infrared_window(ir: np.ndarray, spec: IrRange, name: str) -> tuple[float, float] | None:
    """The window of the infrared pixels (:func:`contrafuse.thermal.window`); errors name the image."""
    try:
        return window(ir, spec)
    except IrRangeError as exc:
        raise IrRangeError(f"{name}: {exc}") from None


def pair_name(names: tuple[str, str]) -> str:
    """How messages name a pair: ``"IR + VIS"`` (as ``contrafuse align`` does)."""
    return f"{names[0]} + {names[1]}"


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
