"""The training engine shared by every method: the loop, from the config to the exported weights.

Runs unchanged alone (CPU or one GPU) or under ``torchrun`` (one process per device,
DistributedDataParallel over gloo on CPU or nccl on GPU; global batch = ``train.batch_size`` x
world size; :mod:`.distributed`). What differs between methods comes from the recipe (see
``recipe.py``); checkpoints and what a resumed run may change are in :mod:`.resume`, the logs in
:mod:`.runlog`, the exported weights in :mod:`.export`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ..evaluation import finite_or_none
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, restore_rng_state
from .config import ConfigError, TrainConfig, apply_overrides, check_loop, config_from_dict, read_yaml
from .distributed import Process, place_models, seed_everything, setup_process, wrap_distributed
from .export import export_weights, file_sha256
from .recipe import Recipe, Stage, get_recipe, unwrap, validation_pairs
from .resume import check_resumable, restore_states, write_checkpoint
from .runfolder import RunLock, check_run_folder, clear_run, trim_log
from .runlog import LossMeter, RunLog, current_lrs, require_tensorboard
from .sampling import SampleStream
from .validation import ValidationLog, Validator

BEST_FOLDER = "best"  # the best-scoring validated weights, beside the last ones (runfolder.RUN_FOLDERS)

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    out_dir: Path
    weights: Path | None  # exported inference weights (main process only)
    checkpoint: Path
    steps: int
    losses: dict[str, float] = field(default_factory=dict)  # last logged averages


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None, method: str | None = None) -> TrainConfig:
    """Config of ``method`` from a YAML file (optional) and ``key.path=value`` overrides."""
    values = read_yaml(path) if path is not None else {}
    declared = values.get("method")
    if method and declared and method != declared:
        raise ConfigError(f"{path}: is a config for {declared!r}, not {method!r}")
    values["method"] = method or declared
    values = apply_overrides(values, overrides or [])
    if not values.get("method"):
        raise ConfigError("no training method given (method: in the config, or the CLI argument)")
    recipe = get_recipe(values["method"])
    return config_from_dict(recipe.config_class, values)


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    on_step_end: StepCallback | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``cfg.method`` for ``cfg.train.steps`` steps into ``out_dir``; see docs/training.md.

    ``resume`` continues from ``out_dir/checkpoint.pt`` when it exists (the run's RNG, data
    position, optimisers and schedulers included), else starts at step 0; a larger
    ``train.steps`` extends a finished run. A folder that holds a run is refused unless
    ``resume`` or ``overwrite`` (start over). ``on_step_end(step, losses)`` is called after
    every step (losses as floats only on logging steps, else {}).
    """
    out_dir = Path(out_dir)
    return _run(cfg, out_dir, resume, overwrite, on_step_end, setup_process(cfg.train.device))


@dataclass
class _Prepared:
    """Everything a run needs, built and checked before anything is written."""

    recipe: Recipe
    stages: list[Stage]
    dataset: Any
    models: dict[str, nn.Module]
    optimizers: dict
    schedulers: dict
    start: int
    elapsed_before: float
    init: dict[str, str]
    validator: Validator | None
    last_losses: dict[str, float] = field(default_factory=dict)  # the last logged averages


def _run(cfg: TrainConfig, out_dir: Path, resume: bool, overwrite: bool, on_step_end: StepCallback | None,
         process: Process) -> TrainResult:
    started = time.perf_counter()
    run = _prepare(cfg, out_dir, resume, overwrite, process)
    models = wrap_distributed(run.models, process)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    lock = RunLock(out_dir)
    if process.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    try:
        if process.is_main:
            if overwrite:
                clear_run(out_dir)
            if run.start > 0:
                trim_log(out_dir, run.start)
        records = ValidationLog(out_dir, run.start if run.start > 0 else None) if process.is_main and run.validator else None
        if records is not None:
            run.validator.resume(records.lines)
        log = RunLog(out_dir, cfg, process, run.start, cfg.train.steps)
        try:
            _loop(run, cfg, models, log, records, process, checkpoint_path, started, on_step_end)
        finally:
            log.close()
        elapsed = run.elapsed_before + time.perf_counter() - started
        weights = None
        if process.is_main:
            weights = export_weights(out_dir, run.recipe, cfg, models, run.dataset, cfg.train.steps, elapsed, process, run.init)
    finally:
        lock.release()
    return TrainResult(out_dir, weights, checkpoint_path, cfg.train.steps, run.last_losses)


def _prepare(cfg: TrainConfig, out_dir: Path, resume: bool, overwrite: bool, process: Process) -> _Prepared:
    """Check the config, the run folder and the checkpoint; build data and models; write nothing."""
    check_loop(cfg)
    recipe = get_recipe(cfg.method)
    recipe.configure(cfg)
    if cfg.train.tensorboard and process.is_main:
        require_tensorboard()  # a missing extra stops the run before it touches the folder
    check_run_folder(out_dir, resume=resume, overwrite=overwrite)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    checkpoint = load_checkpoint(checkpoint_path) if resume and checkpoint_path.is_file() else None
    if checkpoint is not None:
        check_resumable(checkpoint, cfg, process, checkpoint_path, recipe)
    elif resume and process.is_main:
        print(f"no checkpoint in {out_dir}; starting at step 0")
    stages = recipe.stages(cfg)
    check_stages(stages, cfg.train.steps)
    torch.backends.cudnn.benchmark = not cfg.train.deterministic
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True)

    dataset = recipe.build_dataset(cfg, cfg.data.split)  # bad data stops here, before any step
    validator = Validator(cfg, validation_pairs(cfg), out_dir, process.device) if cfg.validation.every > 0 else None
    seed_everything(cfg.train.seed)  # the same initial weights in every process
    models = recipe.build_models(cfg)
    init: dict[str, str] = {}
    if checkpoint is None and cfg.train.init:
        loaded = recipe.init_weights(models, cfg.train.init, cfg)
        init = {"weights": str(loaded), "sha256": file_sha256(loaded)}
    models = place_models(models, process.device, cfg.train.channels_last)
    optimizers, schedulers = recipe.build_optimizers(models, cfg)
    start, elapsed_before = 0, 0.0
    seed_everything(cfg.train.seed + 1 + process.rank)  # per-process randomness inside steps
    if checkpoint is not None:
        restore_states(checkpoint, recipe, models, optimizers, schedulers, checkpoint_path)
        start, elapsed_before = int(checkpoint["step"]), float(checkpoint.get("elapsed_s", 0.0))
        init = dict(checkpoint.get("init") or {})
        if checkpoint["world_size"] == process.world_size:
            restore_rng_state(checkpoint["rng"][process.rank])
        elif process.is_main:
            print("resuming with a different number of processes: data stay exact, other RNG streams restart")
    return _Prepared(recipe, stages, dataset, models, optimizers, schedulers, start, elapsed_before, init, validator)


def _loop(run: _Prepared, cfg: TrainConfig, models: dict[str, nn.Module], log: RunLog, records: ValidationLog | None,
          process: Process, checkpoint_path: Path, started: float, on_step_end: StepCallback | None) -> None:
    """The steps from ``run.start`` to ``train.steps``, with logging, validation and checkpoints."""
    recipe, optimizers, schedulers = run.recipe, run.optimizers, run.schedulers
    meter = LossMeter()
    run.last_losses = {}
    if run.start == 0 and cfg.validation.at_start:
        _validate(run, cfg, models, 0, log, records, process, checkpoint_path.parent, started)
    loader = iter(make_loader(run.dataset, cfg, process, run.start)) if run.start < cfg.train.steps else iter(())
    for step in range(run.start, cfg.train.steps):
        stage, stage_start = stage_of(run.stages, step)
        if step == stage_start:
            recipe.start_stage(stage, models, optimizers, schedulers, cfg)
        for module in models.values():
            module.train()
        batch = to_device(next(loader), process.device, cfg.train.channels_last)
        meter.add(recipe.training_step(models, optimizers, batch, step, stage))
        for scheduler in schedulers.values():
            scheduler.step()
        log.step()
        done = step + 1
        logged = {}
        if done % cfg.train.log_every == 0 or done == cfg.train.steps:
            logged = run.last_losses = meter.averages(process)
            log.record(done, logged, current_lrs(optimizers), run.elapsed_before + time.perf_counter() - started)
        if run.validator is not None and run.validator.due(done):
            _validate(run, cfg, models, done, log, records, process, checkpoint_path.parent, started)  # before the checkpoint: a resume never skips it
        if done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps:
            elapsed = run.elapsed_before + time.perf_counter() - started
            write_checkpoint(checkpoint_path, recipe, cfg, models, optimizers, schedulers, done, elapsed, process, run.init)
        if on_step_end is not None:
            on_step_end(step, logged)


def _validate(run: _Prepared, cfg: TrainConfig, models: dict[str, nn.Module], step: int, log: RunLog,
              records: ValidationLog | None, process: Process, out_dir: Path, started: float) -> None:
    """One validation on the main process (the others wait for it)."""
    if process.is_main and run.validator is not None and records is not None:
        plain = {k: unwrap(m) for k, m in models.items()}
        result = run.validator.run(lambda: run.recipe.export_model(plain, cfg)[0], step)
        if records.add(result) and cfg.validation.keep_best:
            elapsed = run.elapsed_before + time.perf_counter() - started
            chosen = {"step": step, "score": result.score, "means": {k: finite_or_none(v) for k, v in result.means.items()}}
            export_weights(out_dir / BEST_FOLDER, run.recipe, cfg, models, run.dataset, step, elapsed, process, run.init, chosen)
        log.validation(step, result.means, result.grid)
    if process.distributed:
        dist.barrier()


def stage_of(stages: list[Stage], step: int) -> tuple[Stage, int]:
    """The stage holding ``step`` and that stage's first step."""
    start = 0
    for stage in stages:
        if step < start + stage.steps:
            return stage, start
        start += stage.steps
    return stages[-1], start - stages[-1].steps


def check_stages(stages: list[Stage], total: int) -> None:
    if not stages or any(s.steps < 0 for s in stages) or sum(s.steps for s in stages) != total:
        raise ConfigError(f"the recipe's stages {[(s.name, s.steps) for s in stages]} must add up to train.steps = {total}")


def make_loader(dataset: Any, cfg: TrainConfig, process: Process, start_step: int) -> DataLoader:
    sampler = SampleStream(len(dataset), cfg.train.seed, cfg.train.batch_size, process.rank, process.world_size, start_step)
    workers = cfg.data.workers
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=process.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        moved[key] = value
    return moved
