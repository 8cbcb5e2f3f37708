"""The public fusing functions: one pair, a pair of arrays, two folders.

Each is a thin caller of the fusing session (:class:`contrafuse.session.Fuser`), which loads the
model once and runs the pipeline: the pair's preparation and finishing
(:mod:`contrafuse.preparation`) around the model call, with the settings of
:class:`~contrafuse.options.FuseOptions`. Use a :class:`~contrafuse.session.Fuser` directly to
fuse many pairs with one loaded model.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .models import DEFAULT_MODEL
from .options import Color, FuseOptions, Gamut, Rounding
from .preparation import ImageLike, PreparedPair, finish_pair, prepare_pair, quantise
from .runtime import ModelRunner
from .session import BatchReport, Fuser, ModelLike, fuse_luma, fuse_luma_batch


def fuse(
    *,
    ir: ImageLike,
    vis: ImageLike,
    model: ModelLike = DEFAULT_MODEL,
    weights: str | os.PathLike | None = "default",
    device: str | torch.device = "auto",
    options: FuseOptions | None = None,
    model_options: Mapping[str, Any] | None = None,
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
        model_options: keyword options of the registered model's builder, e.g.
            ``{"border": "zeros"}`` (CS2Fusion as the authors run it).

    Returns:
        The fused image as ``(H, W)`` or ``(H, W, 3)`` ``uint8`` (``uint16`` for 16-bit inputs,
        except a windowed infrared image), in the visible image's frame (the infrared's with
        ``direction="vis_to_ir"``).

    Raises:
        RegistrationError: with ``align``, the pair cannot be registered (it is never fused unaligned).
    """
    fuser = Fuser(model, weights=weights, device=device, options=options, model_options=model_options, **option_values)
    return fuser.pair(ir=ir, vis=vis)


def fuse_arrays(
    model: nn.Module | ModelRunner,
    *,
    ir: np.ndarray,
    vis: np.ndarray,
    options: FuseOptions = FuseOptions(),
    device: torch.device = torch.device("cpu"),
    names: tuple[str, str] = ("infrared image", "visible image"),
) -> np.ndarray:
    """Fuse one pair of pixel arrays with a loaded module (or a :class:`~contrafuse.runtime.ModelRunner`);
    returns ``uint8``/``uint16`` gray or RGB pixels. ``names`` name the inputs in messages."""
    prepared = prepare_pair(ir=ir, vis=vis, options=options, names=names)
    runner = model if isinstance(model, ModelRunner) else ModelRunner(model, device=device, precision=options.precision,
                                                                      compile=options.compile)
    fused = fuse_luma_batch(runner, ir=[prepared.ir_luma], vis=[prepared.vis_luma])[0]
    return finish_pair(prepared, fused, options)


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
    model_options: Mapping[str, Any] | None = None,
    **option_values: Any,
) -> BatchReport:
    """Fuse every pair of the folders ``ir`` and ``vis`` (matched by file stem) into ``out/<stem><suffix>``.

    See :meth:`contrafuse.session.Fuser.folders`: a bad pair is reported and the others still
    complete; ``skip_existing`` resumes an interrupted run; ``model_options`` as for :func:`fuse`.
    """
    fuser = Fuser(model, weights=weights, device=device, options=options, model_options=model_options, **option_values)
    return fuser.folders(ir=ir, vis=vis, out=out, overwrite=overwrite, skip_existing=skip_existing, suffix=suffix,
                         progress=progress)


__all__ = ["BatchReport", "Color", "FuseOptions", "Fuser", "Gamut", "PreparedPair", "Rounding", "finish_pair",
           "fuse", "fuse_arrays", "fuse_folders", "fuse_luma", "prepare_pair", "quantise"]
