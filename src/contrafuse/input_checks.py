"""Warnings for inputs that are probably a mistake: a model given the other task's images, or
the two images given the wrong way round. The pair is still fused; each warning is given once
per fusing session (a folder or video run says it once, not per pair).

The rule that tells the tasks apart: medical scans (MRI, CT, PET, SPECT) lie on a black
background that surrounds the anatomy, so nearly all of the outer frame of both images is black;
infrared and visible photographs of a scene are not framed in black. A pair is taken for scans
when at least :data:`SCAN_FRAME_BLACK` of the pixels in the outer frame (the outer
:data:`FRAME_FRACTION` of each side) of each image are black (at most :data:`BLACK_LEVEL`).
On the shared data, scans have 0.94-1.00 of their frame black (Harvard MRI, CT, PET, SPECT) and
photographs at most 0.57 (an LLVIP night infrared image; TNO, RoadScene, M3FD and FMB at most 0.45).

Which image carries colour follows from the task: in an infrared-visible pair the visible image
may be colour and the infrared one is gray; in a medical pair the functional image (PET, SPECT,
pseudo-colour) goes in the ``ir`` slot and the MRI (gray) in ``vis``. A colour image in the other
slot, with a gray partner, is reported as a likely swap.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
from torch import nn

from .color import luma01
from .errors import ContrafuseWarning
from .io import is_color
from .models import list_models, model_info

FRAME_FRACTION = 0.05
BLACK_LEVEL = 4 / 255
SCAN_FRAME_BLACK = 0.8


class InputWarning(ContrafuseWarning):
    """The inputs do not look like what the model or the slots expect (fused anyway)."""


def frame_black_fraction(image: np.ndarray) -> float:
    """Fraction of the pixels of the outer frame (:data:`FRAME_FRACTION` of each side) that are black."""
    if image.dtype.kind == "f":
        return 0.0  # radiometric temperatures or counts: a thermal image, never a scan
    y = luma01(image)
    height, width = y.shape
    border = max(1, round(min(height, width) * FRAME_FRACTION))
    frame = np.concatenate([y[:border].ravel(), y[-border:].ravel(), y[:, :border].ravel(), y[:, -border:].ravel()])
    return float((frame <= BLACK_LEVEL).mean())


def looks_like_scans(*, ir: np.ndarray, vis: np.ndarray) -> bool:
    """True when both images have the black surround of medical scans (see the module doc)."""
    return min(frame_black_fraction(ir), frame_black_fraction(vis)) >= SCAN_FRAME_BLACK


def model_task(network: nn.Module) -> tuple[str, str] | None:
    """``(name, task)`` of a registered model, or of the model an exported ONNX file was made from; else None."""
    info = getattr(network, "model_info", None)
    if info is not None and hasattr(info, "task"):
        return info.name, info.task
    metadata = getattr(network, "metadata", None)
    name = metadata.get("contrafuse_model") if isinstance(metadata, dict) else None
    if name in list_models():
        return name, model_info(name).task
    return None


class InputChecks:
    """The checks of one fusing session, each warning given at most once."""

    def __init__(self, network: nn.Module) -> None:
        self.model = model_task(network)
        self._given: set[str] = set()
        self._lock = threading.Lock()

    def check(self, *, ir: np.ndarray, vis: np.ndarray, names: tuple[str, str]) -> None:
        """Warn (:class:`InputWarning`) when this pair looks like a mistake; quiet otherwise."""
        if {"task", "swap"} <= self._given:
            return
        scans = looks_like_scans(ir=ir, vis=vis)
        pair = f"{names[0]} + {names[1]}"
        task = self.model[1] if self.model else "any"
        if task == "medical" and not scans:
            self._warn("task", f"{self.model[0]} is a medical model (MRI with CT, PET or SPECT), but {pair} does not "
                               "look like a pair of scans (no black surround); for infrared-visible images use "
                               "cs2fusion or coconet")
        elif task == "ivif" and scans:
            self._warn("task", f"{self.model[0]} is an infrared-visible model, but {pair} looks like a pair of "
                               "medical scans (black all around both images); for MRI with CT, PET or SPECT use "
                               "coconet-medical")
        colour_slot, gray_slot = (vis, ir) if scans else (ir, vis)  # the slot that should hold no colour, first
        if is_color(colour_slot) and not is_color(gray_slot):
            self._warn("swap", self._swap_message(names, scans))

    @staticmethod
    def _swap_message(names: tuple[str, str], scans: bool) -> str:
        if scans:
            return (f"the visible/MRI input {names[1]} is colour and the infrared/functional input {names[0]} is gray: "
                    "were --ir and --vis swapped? (a medical pair takes the pseudo-colour PET/SPECT image as --ir, "
                    "the MRI as --vis)")
        return (f"the infrared input {names[0]} is colour and the visible input {names[1]} is gray: were --ir and "
                "--vis swapped?")

    def _warn(self, kind: str, message: str) -> None:
        with self._lock:
            if kind in self._given:
                return
            self._given.add(kind)
        warnings.warn(InputWarning(message), stacklevel=3)
