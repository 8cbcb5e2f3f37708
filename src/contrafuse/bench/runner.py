"""Running a benchmark: fuse every dataset with every model (cached), then score every method.

Layout of the output folder (only ``fused/`` and ``.cache/`` are written here; the report
files come from :mod:`.report`)::

    OUT/fused/<dataset>/<model label>/<pair>.png    fused outputs, reused on the next run
    OUT/fused/<dataset>/<model label>/run.json      how they were made, and the seconds per pair
    OUT/.cache/metrics.json                         metric values keyed by file identity

Fused outputs are reused when ``run.json`` says they were made the same way (model, weights
file, colour, rounding, and the infrared window when it is not ``auto``); ``refresh=True``
recomputes everything. The metrics see the infrared sources through the same window as the
models (``options.ir_range``), for result folders of other methods too.

Under torchrun (``torchrun --nproc_per_node N -m contrafuse bench ...``) every process fuses and
scores its share of each dataset's pairs (:mod:`contrafuse.shards`: pair i of what is not cached
goes to rank i mod N, each on GPU ``LOCAL_RANK`` when there are several); the shares are gathered
after each method and dataset, so every process holds the whole result, and only rank 0 writes
``run.json``, the metric cache and the report.
"""
from __future__ import annotations

import json
import os
import statistics
import inspect
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import metrics
from ..atomic import write_text
from ..devices import resolve_device
from ..errors import ContrafuseError
from ..evaluation import score_many
from ..io import PairFiles, read_image, write_image
from ..models import list_models, model_info
from ..options import FuseOptions
from ..preparation import PreparedPair
from ..session import FolderJob, Fuser
from ..shards import Shard, current_shard
from ..thermal import IrRange
from .specs import BenchDataset, Method

RUN_FILE = "run.json"
# the usual protocol: metrics are computed on gray outputs, of the PyTorch reference path
BENCH_OPTIONS = FuseOptions(color="gray", backend="torch")


@dataclass
class Timing:
    """Seconds the model took for each pair (reading, colour handling and writing, which overlap
    with it, excluded). A batch's time is shared among its pairs, and among the workers running
    at once, so that the times add up to the fusing time."""

    device: str
    seconds: dict[str, float] = field(default_factory=dict)
    reused: int = 0  # pairs whose output (and time) came from an earlier run

    @property
    def per_pair(self) -> float:
        """Median seconds per pair (robust on a shared machine); NaN when nothing was timed."""
        return statistics.median(self.seconds.values()) if self.seconds else float("nan")


@dataclass
class MethodResult:
    """One method on one dataset: fused files, metric values per pair, failures and timing."""

    method: Method
    outputs: dict[str, Path] = field(default_factory=dict)
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    timing: Timing | None = None


@dataclass
class BenchResult:
    """All results, by dataset label then method label, plus the settings the report states."""

    datasets: list[BenchDataset]
    methods: list[Method]
    metric_names: list[str]
    convention: str
    device: str
    results: dict[str, dict[str, MethodResult]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    ir_range: IrRange = IrRange()  # the infrared window of the fused outputs and the metrics


def _weights_identity(weights: str | None) -> dict[str, object] | None:
    if weights is None or weights == "default":
        return {"weights": weights}
    stat = Path(weights).stat()
    return {"weights": str(Path(weights).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _recipe(method: Method, options: FuseOptions) -> dict[str, object]:
    """What determines the fused pixels; outputs made with another recipe are not reused."""
    model = _weights_identity(method.model) if str(method.model).lower().endswith(".onnx") else method.model
    recipe = {"model": model, "weights": _weights_identity(method.weights), "color": options.color.value,
              "rounding": options.rounding.value}
    builder_options = _builder_options(method)
    if builder_options:  # with the builder's defaults: outputs made under an older default are not reused
        recipe["model_options"] = builder_options
    if options.precision not in (None, "fp32"):  # full-precision recipes stay as earlier runs wrote them
        recipe["precision"] = options.precision.value
    if options.backend != "torch":  # likewise for the reference path
        recipe["backend"] = options.backend
    if options.ir_range.kind != "auto":  # likewise for the default window
        recipe["ir_range"] = str(options.ir_range)
    return recipe


def _builder_options(method: Method) -> dict[str, str]:
    """Every keyword option of a registered model's builder: its default, or the method's value."""
    if method.model not in list_models():
        return {}
    defaults = {p.name: p.default for p in inspect.signature(model_info(method.model).builder).parameters.values()
                if p.kind is p.KEYWORD_ONLY}
    return {key: str(value) for key, value in {**defaults, **dict(method.model_options)}.items()}


def _read_run_file(folder: Path) -> dict:
    try:
        return json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def fuse_dataset(
    method: Method,
    dataset: BenchDataset,
    folder: Path,
    device: torch.device,
    options: FuseOptions = BENCH_OPTIONS,
    refresh: bool = False,
    progress: bool = True,
    shard: Shard = Shard(),
) -> MethodResult:
    """Fuse every pair of ``dataset`` with a model method into ``folder/<pair>.png``.

    Existing outputs made with the same recipe are reused (their earlier time is kept);
    a pair that fails is recorded with its message and the others still run. With a
    distributed ``shard`` this process fuses its share and returns everyone's.
    """
    recipe = _recipe(method, options)
    previous = _read_run_file(folder)
    reusable = not refresh and previous.get("recipe") == recipe
    old_seconds = previous.get("seconds", {}) if reusable else {}
    result = MethodResult(method, timing=Timing(str(device)))
    jobs = []
    for pair in dataset.pairs:
        target = folder / f"{pair.name}.png"
        if reusable and target.is_file():
            result.outputs[pair.name] = target
            if pair.name in old_seconds:
                result.timing.seconds[pair.name] = float(old_seconds[pair.name])
                result.timing.reused += 1
        else:
            jobs.append(FolderJob(pair, target))
    mine = shard.take(jobs)
    if mine:
        _fuse_jobs(mine, method, dataset, device, options, result, progress and shard.is_main)
    if shard.distributed:
        _gather_fused(result, dataset, shard)
    if previous.get("device") not in (None, str(device)) and result.timing.reused:
        result.timing.device = f"{previous['device']} (cached) / {device}"
    if shard.is_main:
        run_record = {"recipe": recipe, "device": str(device), "seconds": result.timing.seconds}
        write_text(folder / RUN_FILE, json.dumps(run_record, indent=1) + "\n", overwrite=True)
    return result


def _gather_fused(result: MethodResult, dataset: BenchDataset, shard: Shard) -> None:
    """Every process's outputs, failures and times in ``result``, in the dataset's pair order."""
    shares = shard.gather((result.outputs, result.failed, result.timing.seconds))
    for outputs, failed, seconds in shares:
        result.outputs.update(outputs)
        result.failed.update(failed)
        result.timing.seconds.update(seconds)
    if len(shares) > 1:
        result.timing.device = f"{result.timing.device}, {len(shares)} processes"
    order = [p.name for p in dataset.pairs]
    result.outputs = {n: result.outputs[n] for n in order if n in result.outputs}
    result.timing.seconds = {n: result.timing.seconds[n] for n in order if n in result.timing.seconds}


def _fuse_jobs(jobs: list[FolderJob], method: Method, dataset: BenchDataset, device: torch.device, options: FuseOptions,
               result: MethodResult, progress: bool) -> None:
    """Fuse the pairs not reused, through the pipeline; outputs, failures and times go into ``result``."""
    try:
        fuser = Fuser(method.model, weights=method.weights, device=device, options=options,
                      model_options=dict(method.model_options))
    except ContrafuseError as exc:
        result.failed.update({job.pair.name: str(exc) for job in jobs})
        return
    workers = fuser.workers

    def load(job: FolderJob) -> PreparedPair:
        prepared = fuser.prepare(ir=read_image(job.pair.ir), vis=read_image(job.pair.vis),
                                 names=(str(job.pair.ir), str(job.pair.vis)))
        prepared.name = job.pair.name
        return prepared

    def store(job: FolderJob, prepared: PreparedPair, fused) -> Path:
        return write_image(job.target, fuser.finish(prepared, fused), overwrite=True)

    def timed(batch: list[PreparedPair], seconds: float) -> None:
        for prepared in batch:
            result.timing.seconds[prepared.name] = seconds / len(batch) / workers

    start = time.perf_counter()
    outcomes = fuser.run_jobs(jobs, load=load, store=store, progress=progress, desc=f"{dataset.label}/{method.label}",
                              on_batch=timed)
    for outcome in outcomes:
        if outcome.ok:
            result.outputs[outcome.item.pair.name] = outcome.value
        else:
            result.failed[outcome.item.pair.name] = str(outcome.error)
            result.timing.seconds.pop(outcome.item.pair.name, None)
    fused = sum(outcome.ok for outcome in outcomes)
    seconds = time.perf_counter() - start
    if progress and fused:
        print(f"{dataset.label}/{method.label}: fused {fused} pair(s) in {seconds:.1f} s, {fused / seconds:.2f} pairs/s "
              f"({fuser.describe()})", file=sys.stderr)
    result.outputs = {p.name: result.outputs[p.name] for p in dataset.pairs if p.name in result.outputs}


def collect_results(method: Method, dataset: BenchDataset) -> MethodResult:
    """The fused images of a result folder, matched to the dataset's pairs by name."""
    result = MethodResult(method)
    for pair in dataset.pairs:
        path = method.find_result(dataset.label, pair.name)
        if path is None:
            result.failed[pair.name] = f"{method.results_folder(dataset.label)}: no fused image named {pair.name}.*"
        else:
            result.outputs[pair.name] = path
    return result


class MetricCache:
    """Metric values of fused files, keyed by the files' identity (path, size, mtime) and convention."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.entries: dict[str, dict[str, float]] = {}
        if enabled and path.is_file():
            try:
                self.entries = json.loads(path.read_text())
            except ValueError:
                self.entries = {}

    @staticmethod
    def key(fused: Path, pair: PairFiles, convention: str, ir_range: IrRange = IrRange()) -> str:
        parts = [convention] if ir_range.kind == "auto" else [convention, f"ir_range={ir_range}"]
        for path in (fused, pair.ir, pair.vis):
            stat = path.stat()
            parts += [str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
        return "|".join(parts)

    def get(self, key: str, names: list[str]) -> dict[str, float] | None:
        found = self.entries.get(key, {})
        return {n: found[n] for n in names} if all(n in found for n in names) else None

    def put(self, key: str, values: dict[str, float]) -> None:
        self.entries.setdefault(key, {}).update(values)

    def save(self) -> None:
        write_text(self.path, json.dumps(self.entries) + "\n", overwrite=True)


def evaluate(
    result: MethodResult,
    dataset: BenchDataset,
    names: list[str],
    convention: str,
    cache: MetricCache,
    workers: int = 1,
    progress: bool = True,
    ir_range: IrRange = IrRange(),
    shard: Shard = Shard(),
) -> None:
    """Fill ``result.values`` with the metrics of every fused output (cached values reused).

    What the cache lacks is scored by :func:`contrafuse.evaluation.score_many`, the infrared
    sources seen through ``ir_range``; a pair that fails lands in ``result.failed`` with the
    message naming its file. With a distributed ``shard`` this process scores its share of
    what the cache lacks and receives everyone's.
    """
    pairs = {p.name: p for p in dataset.pairs}
    todo: list[tuple[str, str]] = []  # (pair name, cache key) of what is not cached
    for name, fused in result.outputs.items():
        key = cache.key(fused, pairs[name], convention, ir_range)
        cached = cache.get(key, names)
        if cached is not None:
            result.values[name] = cached
        else:
            todo.append((name, key))
    mine = shard.take(todo)
    scores = score_many(
        [result.outputs[name] for name, _ in mine],
        ir=[pairs[name].ir for name, _ in mine],
        vis=[pairs[name].vis for name, _ in mine],
        names=names, convention=convention, workers=workers, progress=progress and shard.is_main,
        desc=f"{dataset.label}/{result.method.label} metrics", ir_range=ir_range,
    )
    scored = [(name, key, score.values if score.ok else None, score.error) for (name, key), score in zip(mine, scores)]
    for share in shard.gather(scored):
        for name, key, values, error in share:
            if values is not None:
                result.values[name] = values
                cache.put(key, values)
            else:
                result.failed[name] = error
    result.values = {p.name: result.values[p.name] for p in dataset.pairs if p.name in result.values}


def run_bench(
    datasets: list[BenchDataset],
    methods: list[Method],
    out_dir: str | os.PathLike,
    *,
    metric_names: list[str] | str | None = None,
    convention: str = metrics.DEFAULT_CONVENTION,
    device: str | torch.device = "auto",
    options: FuseOptions = BENCH_OPTIONS,
    refresh: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> BenchResult:
    """Fuse (models) or collect (result folders), then score every method on every dataset.

    Args:
        datasets, methods: see :mod:`.specs`.
        out_dir: output folder; fused images go to ``out_dir/fused/<dataset>/<method>/``.
        metric_names: names for :func:`contrafuse.metrics.compute` (None = its defaults).
        convention: metric convention (``"cddfuse"`` or ``"matlab"``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` for the models.
        options: how the models' outputs are made; gray (the default) is the usual protocol.
        refresh: recompute fused outputs and metric values even when cached.
        workers: processes computing metrics.
    """
    out_dir = Path(out_dir)
    names = metrics.resolve_names(metric_names)
    shard = current_shard()
    device = resolve_device(device, local_rank=shard.local_rank)
    bench = BenchResult(datasets, methods, names, convention, str(device), ir_range=options.ir_range)
    cache = MetricCache(out_dir / ".cache" / "metrics.json", enabled=not refresh)
    try:
        for dataset in datasets:
            per_method: dict[str, MethodResult] = {}
            for method in methods:
                if method.kind == "model":
                    folder = out_dir / "fused" / dataset.label / method.label
                    result = fuse_dataset(method, dataset, folder, device, options, refresh, progress, shard)
                else:
                    result = collect_results(method, dataset)
                evaluate(result, dataset, names, convention, cache, workers, progress, options.ir_range, shard)
                if shard.is_main:
                    cache.save()  # an interrupted run keeps what it has scored
                per_method[method.label] = result
                bench.warnings += [f"{dataset.label}/{method.label}/{n}: {msg}" for n, msg in result.failed.items()]
            bench.results[dataset.label] = per_method
    finally:
        if shard.is_main:
            cache.save()
    return bench
