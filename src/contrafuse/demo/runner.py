"""What the demo page runs: one request through the fusing session and the metrics, into files.

No Gradio here. :func:`run_request` fuses a pair with each chosen model through
:class:`contrafuse.session.Fuser` (the session ``contrafuse fuse`` uses), writes each result with
:func:`contrafuse.io.write_image` exactly as the command does, scores it with
:mod:`contrafuse.metrics`, and writes the 8-bit previews the page shows into a folder the caller
owns (one per request, so two browser sessions never share a file). Errors a user can cause
are :class:`~contrafuse.errors.ContrafuseError`s whose one-line messages name the uploaded files
by their own names.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import metrics
from ..bench.grid import to_display
from ..data.datasets import DatasetError, dataset_info, dataset_pairs, list_datasets, resolve_data_root
from ..errors import ContrafuseError
from ..evaluation import infrared_source
from ..io import PairFiles, read_image, write_image
from ..models import model_info
from ..options import FuseOptions
from ..registration import Registration
from ..session import Fuser, is_onnx_path
from ..thermal import for_display

# The nine metrics of the README's tables, then the region watches (ours, not in the default set).
TABLE_METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")
REGION_WATCHES = ("FG_IR", "BG_VIS", "OUT25")
CHECKER_TILES = 8  # squares along the longer side of the overlay


class TaskMismatchError(ContrafuseError):
    """A model trained for one task (medical, infrared-visible) given a pair of the other."""


@dataclass(frozen=True)
class Example:
    """A pair the page offers without an upload: ``task`` is ``ivif`` or ``medical``."""

    label: str
    ir: Path
    vis: Path
    task: str


@dataclass(frozen=True)
class Request:
    """One press of the Fuse button: the pair, the models and the options (the CLI's names).

    ``ir_name``, ``vis_name``: how messages name the inputs (the uploaded files' own names);
    ``task``: the pair's task when it is known (a dataset example), else None.
    """

    ir: Path
    vis: Path
    models: tuple[str, ...]
    color: str = "auto"
    gamut: str = "auto"
    ir_range: str = "auto"
    align: str = "none"
    ir_name: str = ""
    vis_name: str = ""
    task: str | None = None

    def options(self) -> FuseOptions:
        """The :class:`FuseOptions` these choices make (the same ``contrafuse fuse`` builds)."""
        return FuseOptions(color=self.color, gamut=self.gamut, ir_range=self.ir_range, align=self.align)


@dataclass
class ModelResult:
    """One model's output: ``fused`` is the file ``contrafuse fuse`` would write; ``preview`` an
    8-bit PNG of it for the page; ``values`` the metrics by name."""

    model: str
    fused: Path
    preview: Path
    values: dict[str, float]


@dataclass
class DemoResult:
    """Everything one request produced: a result per model, the 8-bit previews of the two
    sources in the output frame, and for an aligned pair its registration and a checkerboard
    of the warped infrared image over the visible one."""

    results: list[ModelResult] = field(default_factory=list)
    ir_preview: Path | None = None
    vis_preview: Path | None = None
    registration: Registration | None = None
    checkerboard: Path | None = None

    def table(self) -> tuple[list[str], list[list[object]]]:
        """The metrics table: headers (with the better direction) and one row per model."""
        names = [*TABLE_METRICS, *REGION_WATCHES]
        arrows = {info.name: "↑" if info.direction == "higher" else "↓" for info in metrics.list()}
        headers = ["model", *(f"{name} {arrows[name]}" for name in names)]
        rows = [[r.model, *(_rounded(r.values[name]) for name in names)] for r in self.results]
        return headers, rows


def _rounded(value: float) -> float | str:
    return "n/a" if not np.isfinite(value) else float(f"{value:.4g}")


def model_label(model: str) -> str:
    """How a model is named on the page and in file names: its name, or an ONNX file's stem."""
    return Path(model).stem if is_onnx_path(model) else model


def check_task(model: str, task: str | None, pair: str) -> None:
    """Refuse a registered model whose task is not the pair's (an ONNX file declares none)."""
    if task is None or is_onnx_path(model):
        return
    model_task = model_info(model).task
    if model_task not in ("any", task):
        raise TaskMismatchError(f"{pair}: model {model} fuses {_TASK_WORDS[model_task]} pairs, this is a "
                                f"{_TASK_WORDS[task]} pair; choose a model for {_TASK_WORDS[task]} pairs")


_TASK_WORDS = {"ivif": "infrared-visible", "medical": "medical"}


def run_request(request: Request, workdir: Path) -> DemoResult:
    """Fuse the request's pair with each of its models into ``workdir`` (created; the caller removes it).

    Raises :class:`~contrafuse.errors.ContrafuseError` with the CLI's message (an unreadable or
    oversized image, sizes that differ without alignment, a pair that cannot be registered, a
    model for the other task, a bad option value), the uploaded files named by their own names.
    """
    if not request.models:
        raise ContrafuseError("choose at least one model")
    labels = [model_label(model) for model in request.models]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ContrafuseError(f"two models are named {', '.join(twice)} (a registered model and an .onnx file?): "
                              "rename the .onnx file")
    names = (request.ir_name or request.ir.name, request.vis_name or request.vis.name)
    try:
        return _run(request, workdir, names)
    except ContrafuseError as exc:
        raise ContrafuseError(_renamed(str(exc), request, names)) from None


def _renamed(message: str, request: Request, names: tuple[str, str]) -> str:
    """``message`` with the server-side paths of the inputs replaced by their own names."""
    for path, name in ((request.ir, names[0]), (request.vis, names[1])):
        message = message.replace(str(path), name)
    return message


def _run(request: Request, workdir: Path, names: tuple[str, str]) -> DemoResult:
    for model in request.models:
        check_task(model, request.task, f"{names[0]} + {names[1]}")
    options = request.options()
    workdir.mkdir(parents=True, exist_ok=True)
    result = DemoResult()
    ir_pixels, vis_pixels = read_image(request.ir), read_image(request.vis)
    for index, model in enumerate(request.models):
        fuser = Fuser(model, options=options)
        fused = fuser.pair(ir=ir_pixels, vis=vis_pixels, names=names)
        if index == 0 and fuser.last_registration is not None:
            # the first model's estimate serves the others: the same transform, estimated once
            result.registration = fuser.last_registration
            options = options.with_values(align="none", transform=result.registration)
        result.results.append(_store(model, fused, request, result.registration, workdir, names))
    _sources(result, request, ir_pixels, vis_pixels, workdir)
    return result


def output_name(vis_name: str, model: str) -> str:
    """File name of a result: the visible image's stem and the model (``vis-cs2fusion.png``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(vis_name).stem) or "fused"
    return f"{stem}-{re.sub(r'[^A-Za-z0-9._-]+', '_', model_label(model))}.png"


def _store(model: str, fused: np.ndarray, request: Request, registration: Registration | None, workdir: Path,
           names: tuple[str, str]) -> ModelResult:
    target = workdir / output_name(names[1], model)
    write_image(target, fused)
    preview = write_image(workdir / f"preview-{target.name}", to_display(fused))
    values = metrics.compute(fused, ir=metric_infrared(request, registration), vis=request.vis,
                             names=[*TABLE_METRICS, *REGION_WATCHES])
    return ModelResult(model_label(model), target, preview, values)


def metric_infrared(request: Request, registration: Registration | None) -> np.ndarray:
    """The infrared source as the metrics see it (``contrafuse eval``: through its window), in the
    output frame: warped like the model's input when the pair was aligned. Gray float, 0..255."""
    gray = metrics.load_gray(infrared_source(request.ir, request.ir_range), "infrared image")
    if registration is None:
        return gray
    return np.clip(registration.warp(gray.astype(np.float32)), 0, 255).astype(np.float64)


def _sources(result: DemoResult, request: Request, ir: np.ndarray, vis: np.ndarray, workdir: Path) -> None:
    shown_ir = to_display(for_display(ir, request.ir_range))
    if result.registration is not None:
        shown_ir = result.registration.warp(shown_ir)
    shown_vis = to_display(vis)
    result.ir_preview = write_image(workdir / "preview-ir.png", shown_ir)
    result.vis_preview = write_image(workdir / "preview-vis.png", shown_vis)
    if result.registration is not None:
        result.checkerboard = write_image(workdir / "checkerboard.png", checkerboard(shown_ir, shown_vis))


def checkerboard(first: np.ndarray, second: np.ndarray, tiles: int = CHECKER_TILES) -> np.ndarray:
    """Alternate square tiles of two same-size images (``first`` where the tile row and column
    have the same parity): misalignment shows as broken edges at the tile borders."""
    if first.shape != second.shape:
        raise ValueError(f"checkerboard needs two images of one shape, got {first.shape} and {second.shape}")
    height, width = first.shape[:2]
    side = max(1, -(-max(height, width) // tiles))
    rows = (np.arange(height) // side)[:, None]
    cols = (np.arange(width) // side)[None, :]
    mask = (rows + cols) % 2 == 0
    return np.where(mask[..., None] if first.ndim == 3 else mask, first, second)


SHIPPED_EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLES_PER_DATASET = 3


def shipped_examples(folder: Path = SHIPPED_EXAMPLES) -> list[Example]:
    """The pair in the checkout's ``examples/`` (absent from an installed wheel: then none)."""
    ir, vis = folder / "ir.png", folder / "vis.png"
    return [Example("examples: ir.png + vis.png", ir, vis, "ivif")] if ir.is_file() and vis.is_file() else []


def dataset_task(name: str) -> str:
    """``ivif`` for an infrared-visible dataset, ``medical`` for the others (by its modality labels)."""
    return "ivif" if dataset_info(name).modalities == ("IR", "VIS") else "medical"


def dataset_examples(root: str | os.PathLike | None = None, per_dataset: int = EXAMPLES_PER_DATASET) -> list[Example]:
    """A few pairs of every named dataset found under the data root (none when there is no root)."""
    try:
        base = resolve_data_root(root)
    except DatasetError:
        return []
    examples = []
    for name, splits in list_datasets().items():
        if name == "harvard":
            continue  # the union of the three harvard_* sets listed on their own
        try:
            pairs: list[PairFiles] = dataset_pairs(name, "all" if "all" in splits else splits[-1], base)
        except ContrafuseError:
            continue  # not in this data root, or not in its published layout
        examples += [Example(f"{name}: {pair.name}", pair.ir, pair.vis, dataset_task(name)) for pair in pairs[:per_dataset]]
    return examples


def find_examples(root: str | os.PathLike | None = None) -> list[Example]:
    """The shipped pair, then the dataset pairs found."""
    return [*shipped_examples(), *dataset_examples(root)]
