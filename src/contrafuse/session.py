"""The fusing session: one loaded model, its runner and the options, for pairs, folders and videos.

A :class:`Fuser` is what every entry point uses (``contrafuse.fuse``, ``fuse_folders``,
``fuse_video``, ``contrafuse bench``, the training validation and the demo page): it loads the
model once (a registered name, a module, or an exported ``.onnx`` file run by ONNX Runtime),
resolves the device, and runs pairs through the same preparation
(:mod:`contrafuse.preparation`), model call and finishing::

    fuser = Fuser(model="cs2fusion", device="auto", options=FuseOptions(color="gray"))
    pixels = fuser.pair(ir="ir.png", vis="vis.jpg")
    report = fuser.folders(ir="ir/", vis="vis/", out="out/")

Folder and video runs overlap reading, fusing and writing (:mod:`contrafuse.pipeline`) and fuse
same-size pairs ``options.batch_size`` at a time; at full precision on a CPU the outputs are
byte-identical to one pair at a time.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import torch
from torch import nn

from .atomic import InputGuard, check_writable, remove_stale_partials
from .devices import resolve_device
from .errors import ContrafuseError
from .input_checks import InputChecks
from .io import PairFiles, pair_folders, read_image, write_image
from .models import DEFAULT_MODEL, create_model
from .onnx_cache import NO_EXPORT, ONNX_MAX_PIXELS, cached_export, why_not_onnx
from .options import FuseOptions, resolve_options
from .pipeline import Outcome, run_batched
from .preparation import ImageLike, PreparedPair, as_array, finish_pair, prepare_pair
from .registration import Registration
from .runtime import ModelRunner, intra_op_threads, is_exported, parallel_layout
from .shards import current_shard

ModelLike = Union[str, os.PathLike, nn.Module]


def is_onnx_path(model: ModelLike) -> bool:
    """True when ``model`` names an exported ONNX file (by its suffix)."""
    return isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")


def load_model(model: ModelLike, *, weights: str | os.PathLike | None = "default", device: torch.device,
               model_options: Mapping[str, Any] | None = None) -> nn.Module:
    """A model to fuse with: a module (moved to ``device``, eval mode), a registered name, or an
    exported ``.onnx`` file (run by ONNX Runtime; ``weights`` unused).

    ``model_options``: keyword options of a registered model's builder (e.g. ``{"border":
    "zeros"}`` for ``cs2fusion``); a module or an ONNX file is already built, so it takes none.
    """
    if model_options and (isinstance(model, nn.Module) or is_onnx_path(model)):
        raise ContrafuseError(f"model options ({', '.join(model_options)}) apply to a registered model name; "
                              f"{'an ONNX file' if is_onnx_path(model) else 'a module'} is already built")
    if isinstance(model, nn.Module):
        return model.to(device).eval()
    if is_onnx_path(model):
        from .export import OnnxModel

        return OnnxModel(model, device)
    return create_model(str(model), weights=weights, device=device, **dict(model_options or {}))


def build_runner(model: ModelLike, network: nn.Module, *, weights: str | os.PathLike | None, device: torch.device,
                 options: FuseOptions, model_options: Mapping[str, Any] | None = None) -> ModelRunner:
    """How a session runs its model: PyTorch, or the cached ONNX export (``options.backend``;
    :mod:`contrafuse.onnx_cache`). ``auto`` falls back to PyTorch and the runner's summary says
    why; ``onnxruntime`` raises instead."""
    plain = {"device": device, "precision": options.precision, "compile": options.compile}
    if is_exported(network) or options.backend == "torch":  # an ONNX file is run as it is, whatever the backend
        return ModelRunner(network, **plain)
    precision = options.precision.value if options.precision is not None else None
    reason = why_not_onnx(model, network, weights=weights, device=device, precision=precision, compile=options.compile)
    onnx = None
    if reason is None:
        from .export import OnnxModel

        try:
            onnx = OnnxModel(cached_export(str(model), network, model_options), device, threads=torch.get_num_threads())
        except ContrafuseError as exc:
            reason = f"the cached ONNX export failed: {exc}"
    if onnx is None and options.backend == "onnxruntime":
        raise ContrafuseError(f"backend onnxruntime cannot run {model if isinstance(model, str) else 'this module'}: "
                              f"{reason}")
    if onnx is None:  # a model never run exported needs no note
        return ModelRunner(network, **plain, onnx_note="" if reason == NO_EXPORT else f"backend auto: {reason}")
    return ModelRunner(network, **plain, onnx=onnx, onnx_max_pixels=ONNX_MAX_PIXELS)


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
    """Fuse two ``(H, W)`` float luma arrays in [0, 1] with a model; float64 out."""
    runner = model if isinstance(model, ModelRunner) else ModelRunner(model, device=device)
    return fuse_luma_batch(runner, ir=[np.asarray(ir, np.float32)], vis=[np.asarray(vis, np.float32)])[0]


def io_threads() -> int:
    """Reader and writer threads per pipeline: up to 4, no more than the CPUs."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class BatchReport:
    """What a folder run did.

    ``written``: outputs, in pair order; ``failed``: (pair name, message); ``unmatched``:
    inputs without a partner; ``skipped``: existing outputs left alone (``skip_existing``);
    ``cleaned``: stale temporary files of earlier runs removed; ``seconds``: wall time of the
    run (model loading excluded); ``setup``: how the model ran (precision, backend, batch size,
    workers); ``confidence``: with ``align``, the confidence of each written pair's estimate, by
    pair name (pairs refused by the checks are in ``failed``).
    """

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    cleaned: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    setup: str = ""
    confidence: dict[str, float] = field(default_factory=dict)

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


def merged_report(reports: list[BatchReport]) -> BatchReport:
    """One report for a run whose pairs were shared among processes (:mod:`contrafuse.shards`)."""
    merged = BatchReport(seconds=max(r.seconds for r in reports),
                         setup=f"{reports[0].setup}, {len(reports)} processes")
    for report in reports:
        for name in ("written", "failed", "unmatched", "skipped", "cleaned"):
            getattr(merged, name).extend(getattr(report, name))
    merged.written.sort()
    merged.failed.sort()
    return merged


def folder_input_guard(pairs: list[PairFiles], unmatched: list[Path], *, ir_folder: Path) -> InputGuard:
    """An :class:`~contrafuse.atomic.InputGuard` over every file of a folder run, partnered or not."""
    roles = [("infrared input", p.ir) for p in pairs] + [("visible input", p.vis) for p in pairs]
    ir_folder = ir_folder.resolve()
    roles += [("infrared input" if path.parent.resolve() == ir_folder else "visible input", path) for path in unmatched]
    return InputGuard(roles)


class Fuser:
    """A fusing session: the model loaded once, on one device, with one set of :class:`FuseOptions`.

    Args:
        model: a registered model name (:func:`contrafuse.list_models`), a module, or an
            ``.onnx`` file from ``contrafuse export`` (run by ONNX Runtime; ``weights`` unused).
        weights: ``"default"`` (shipped), a weights file, or None (random initialisation).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a :class:`torch.device`.
        options: the pipeline settings; ``option_values`` change single fields of them.
        model_options: keyword options of a registered model's builder (``{"border": "zeros"}``:
            CS2Fusion's own zero-padded borders, as the authors run it).
    """

    def __init__(
        self,
        model: ModelLike = DEFAULT_MODEL,
        *,
        weights: str | os.PathLike | None = "default",
        device: str | torch.device = "auto",
        options: FuseOptions | None = None,
        model_options: Mapping[str, Any] | None = None,
        **option_values: Any,
    ) -> None:
        self.options = resolve_options(options, option_values)
        self.shard = current_shard()
        self.device = resolve_device(device, local_rank=self.shard.local_rank)
        self.network = load_model(model, weights=weights, device=self.device, model_options=model_options)
        self.runner = build_runner(model, self.network, weights=weights, device=self.device, options=self.options,
                                   model_options=model_options)
        self.last_registration: Registration | None = None  # the transform of the last pair, if one was applied
        self.input_checks = InputChecks(self.network)  # likely mistakes (task, swapped inputs), warned once

    def describe(self) -> str:
        """How the model runs (precision, backend, device) and the batch size: for summaries."""
        return f"{self.runner.describe()}, batch size {self.options.batch_size}"

    def prepare(self, *, ir: np.ndarray, vis: np.ndarray, names: tuple[str, str] = ("infrared image", "visible image"),
                registration: Registration | None = None, initial: Registration | None = None) -> PreparedPair:
        """:func:`~contrafuse.preparation.prepare_pair` with this session's options, after the
        :class:`~contrafuse.input_checks.InputChecks` (a warning, once per session, for a pair that
        looks like a mistake)."""
        self.input_checks.check(ir=ir, vis=vis, names=names)
        return prepare_pair(ir=ir, vis=vis, options=self.options, names=names, registration=registration, initial=initial)

    def finish(self, prepared: PreparedPair, fused: np.ndarray) -> np.ndarray:
        """:func:`~contrafuse.preparation.finish_pair` with this session's options."""
        return finish_pair(prepared, fused, self.options)

    def fuse_prepared(self, batch: list[PreparedPair]) -> list[np.ndarray]:
        """The fused luma of same-size prepared pairs, in one model call."""
        return fuse_luma_batch(self.runner, ir=[p.ir_luma for p in batch], vis=[p.vis_luma for p in batch])

    def pair(self, *, ir: ImageLike, vis: ImageLike, names: tuple[str, str] | None = None) -> np.ndarray:
        """Fuse one pair: file paths, ``uint8``/``uint16`` arrays or PIL images (``ir`` may be float
        gray, a radiometric image). Returns the output pixels, exactly what ``contrafuse fuse``
        writes: ``(H, W)`` or ``(H, W, 3)`` ``uint8`` (``uint16`` for 16-bit inputs, except a
        windowed infrared image). ``names`` (infrared, visible) name the inputs in messages
        (default: the paths, or "infrared image" / "visible image")."""
        ir_pixels, ir_name = as_array(ir, "infrared image", infrared=True)
        vis_pixels, vis_name = as_array(vis, "visible image")
        prepared = self.prepare(ir=ir_pixels, vis=vis_pixels, names=names or (ir_name, vis_name))
        self.last_registration = prepared.registration
        return self.finish(prepared, self.fuse_prepared([prepared])[0])

    def run_jobs(
        self,
        jobs: list[Any],
        *,
        load: Callable[[Any], PreparedPair],
        store: Callable[[Any, PreparedPair, np.ndarray], Any],
        progress: bool = True,
        desc: str = "fusing",
        on_batch: Callable[[list[PreparedPair], float], None] | None = None,
        ordered: bool = False,
        total: int | None = None,
    ) -> list[Outcome]:
        """Run ``jobs`` through the batched pipeline (:func:`contrafuse.pipeline.run_batched`).

        ``load(job)`` gives a :class:`PreparedPair` (reader threads), ``store(job, prepared,
        fused_luma)`` finishes and writes it (writer threads); ``on_batch(batch, seconds)`` hears
        every model call. ``ordered``: one reader and one writer (frames of a video, prepared and
        encoded in order; ``jobs`` may then be an iterator of ``total`` items), and the first
        failure is raised. Returns the :class:`~contrafuse.pipeline.Outcome` of every job, in job order.
        """
        from tqdm import tqdm

        workers, threads = parallel_layout(self.runner, self.options.workers)
        compute = self._timed_compute(on_batch)
        outcomes = []
        count = total if total is not None else len(jobs)
        threads_io = 1 if ordered else io_threads()
        with intra_op_threads(threads), tqdm(total=count, desc=desc, unit="frame" if ordered else "pair",
                                             disable=not progress, file=sys.stderr) as bar:
            for outcome in run_batched(jobs, load=load, compute=compute, store=store, key=PreparedPair.batch_key,
                                       batch_size=self.options.batch_size, workers=workers, readers=threads_io,
                                       writers=threads_io):
                if ordered and not outcome.ok:
                    raise outcome.error
                outcomes.append(outcome)
                bar.update(1)
        if ordered:
            return outcomes
        order = {id(job): index for index, job in enumerate(jobs)}
        return sorted(outcomes, key=lambda outcome: order[id(outcome.item)])

    def _timed_compute(self, on_batch: Callable[[list[PreparedPair], float], None] | None) -> Callable:
        def compute(batch: list[PreparedPair]) -> list[np.ndarray]:
            start = time.perf_counter()
            fused = self.fuse_prepared(batch)
            if on_batch is not None:
                on_batch(batch, time.perf_counter() - start)
            return fused

        return compute

    @property
    def workers(self) -> int:
        """Model calls running at once in folder and video runs."""
        return parallel_layout(self.runner, self.options.workers)[0]

    def folders(
        self,
        *,
        ir: str | os.PathLike,
        vis: str | os.PathLike,
        out: str | os.PathLike,
        overwrite: bool = False,
        skip_existing: bool = False,
        suffix: str = ".png",
        progress: bool = True,
    ) -> BatchReport:
        """Fuse every pair of the folders ``ir`` and ``vis`` (matched by file stem) into ``out/<stem><suffix>``.

        A bad pair (unreadable, sizes differ, output not writable, output that would replace an
        input) is recorded in the report and the others still complete. ``skip_existing``
        resumes an interrupted run: pairs whose output exists are skipped before any work and
        stale temporary files in ``out`` are removed; it cannot be combined with ``overwrite``.
        """
        if overwrite and skip_existing:
            raise ContrafuseError("overwrite and skip_existing contradict each other (--overwrite replaces existing "
                                  "outputs, --skip-existing keeps them); choose one")
        pairs, unmatched = pair_folders(ir=ir, vis=vis)
        out = Path(out)
        shard = self.shard
        # one process cleans before any writes, or it could remove another's file in progress
        cleaned = remove_stale_partials(out) if skip_existing and shard.is_main else []
        shard.barrier()
        report = BatchReport(unmatched=unmatched if shard.is_main else [], cleaned=cleaned)
        guard = folder_input_guard(pairs, unmatched, ir_folder=Path(ir))
        pairs = shard.take(pairs)
        jobs = []
        for pair in pairs:
            target = out / f"{pair.name}{suffix}"
            if skip_existing and target.exists():
                report.skipped.append(target)
            else:
                jobs.append(FolderJob(pair, target))

        def load(job: FolderJob) -> PreparedPair:
            guard.check(job.target)
            check_writable(job.target, overwrite=overwrite)
            return self.prepare(ir=read_image(job.pair.ir), vis=read_image(job.pair.vis),
                                names=(str(job.pair.ir), str(job.pair.vis)))

        def store(job: FolderJob, prepared: PreparedPair, fused: np.ndarray) -> Path:
            written = write_image(job.target, self.finish(prepared, fused), overwrite=overwrite)
            if self.options.align != "none" and prepared.registration is not None:
                report.confidence[job.pair.name] = prepared.registration.confidence
            return written

        report.setup = self.describe()
        start = time.perf_counter()
        for outcome in self.run_jobs(jobs, load=load, store=store, progress=progress):
            if outcome.ok:
                report.written.append(outcome.value)
            else:
                report.failed.append((outcome.item.pair.name, str(outcome.error)))
        report.seconds = time.perf_counter() - start
        return merged_report(shard.gather(report)) if shard.distributed else report

    def video(self, *, ir: str | os.PathLike, vis: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False,
              codec: str | None = None, progress: bool = True, fps: float | None = None) -> Any:
        """Fuse two videos (or image-sequence folders at ``fps``) frame by frame into ``out``; see
        :func:`contrafuse.video.fuse_video`."""
        from .video import DEFAULT_SEQUENCE_FPS, run_video

        return run_video(self, ir=ir, vis=vis, out=out, overwrite=overwrite, codec=codec, progress=progress,
                         fps=DEFAULT_SEQUENCE_FPS if fps is None else fps)
