"""The training engine shared by every method: loop, devices, DDP, data, checkpoints, logs, export.

Runs unchanged alone (CPU or one GPU) or under ``torchrun`` (one process per device,
DistributedDataParallel over gloo on CPU or nccl on GPU; global batch = ``train.batch_size`` x
world size). What differs between methods comes from the recipe (see ``recipe.py``).
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ..devices import DeviceError, describe_device, resolve_device
from ..models.weights import save_weights
from .checkpoint import CHECKPOINT_NAME, CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import (
    ConfigError, TrainConfig, apply_overrides, check_loop, config_from_dict, config_to_dict, config_to_json, planned_steps,
    read_yaml,
)
from .recipe import Recipe, Stage, get_recipe, unwrap, validation_pairs
from .runfolder import LOG_NAME, RunLock, check_run_folder, clear_run, trim_log
from .sampling import SampleStream
from ..evaluation import finite_or_none
from .validation import ValidationLog, Validator

# Config keys that may change when a run is resumed (they do not change the steps it takes).
RESUMABLE_CHANGES = (
    "train.log_every", "train.checkpoint_every", "train.tensorboard", "train.device", "data.workers", "data.root",
    "train.init",  # used only when a run starts
)
# Validation only watches the run; holding pairs out of training changes it.
RESUMABLE_PREFIXES = ("validation.",)
NOT_RESUMABLE = ("validation.holdout",)
BEST_FOLDER = "best"  # the best-scoring validated weights, beside the last ones (runfolder.RUN_FOLDERS)

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class Process:
    """Where this process runs and its place in a distributed run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class TrainResult:
    out_dir: Path
    weights: Path | None  # exported inference weights (main process only)
    checkpoint: Path
    steps: int
    losses: dict[str, float] = field(default_factory=dict)  # last logged averages


# -- configuration ---------------------------------------------------------------------------------

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


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = sorted(set(a) | set(b))
    diffs = []
    for key in keys:
        name = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs.extend(config_differences(va, vb, f"{name}."))
        elif va != vb:
            diffs.append(name)
    return diffs


# -- processes and devices -------------------------------------------------------------------------

def setup_process(device_preference: str) -> Process:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        device = resolve_device(device_preference, local_rank=local_rank)
    except DeviceError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size <= 1:
        return Process(device)
    if not dist.is_initialized():
        # Kept for the life of the process: re-creating it under torchrun's env:// store hangs,
        # and a script may call train() more than once.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_process_group)
    return Process(device, dist.get_rank(), dist.get_world_size(), True)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit() -> str:
    """The checkout's commit (``+dirty`` when it has changes), or "" outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


# -- the pieces of a run ---------------------------------------------------------------------------

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


def place_models(models: dict[str, nn.Module], device: torch.device, channels_last: bool) -> dict[str, nn.Module]:
    for module in models.values():
        module.to(device)
        if channels_last:
            module.to(memory_format=torch.channels_last)
    return models


def wrap_distributed(models: dict[str, nn.Module], process: Process) -> dict[str, nn.Module]:
    """DDP around every module that has trainable parameters (DDP broadcasts rank 0's weights)."""
    if not process.distributed:
        return dict(models)
    device_ids = [process.device.index] if process.device.type == "cuda" else None
    return {
        name: nn.parallel.DistributedDataParallel(m, device_ids=device_ids)
        if any(p.requires_grad for p in m.parameters()) else m
        for name, m in models.items()
    }


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


class LossMeter:
    """Sums of the step losses since the last log, kept on the device (no sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, losses: dict[str, Any]) -> None:
        for key, value in losses.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def averages(self, process: Process) -> dict[str, float]:
        """Means over the steps since the last call, averaged over processes."""
        if not self.sums:
            return {}
        keys = sorted(self.sums)
        values = torch.stack([self.sums[k].to(process.device) for k in keys]) / self.count
        if process.distributed:
            dist.all_reduce(values)
            values /= process.world_size
        self.sums, self.count = {}, 0
        return dict(zip(keys, values.tolist()))


class RunLog:
    """Progress bar, ``log.jsonl`` and optional TensorBoard, on the main process only."""

    def __init__(self, out_dir: Path, cfg: TrainConfig, process: Process, start: int, total: int) -> None:
        self.enabled = process.is_main
        self.bar = self.writer = self.jsonl = None
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        if cfg.train.tensorboard:
            self.writer = tensorboard_writer(out_dir / "tensorboard")
        self.bar = tqdm(total=total, initial=start, desc=f"train {cfg.method}", unit="step", dynamic_ncols=True)
        # An append-only log; a resumed run first trims it to its checkpoint (runfolder.trim_log).
        self.jsonl = open(out_dir / LOG_NAME, "a" if start > 0 else "w")

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def record(self, step: int, losses: dict[str, float], lrs: dict[str, float], elapsed: float) -> None:
        if not self.enabled:
            return
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
        self.jsonl.write(json.dumps({"step": step, "elapsed_s": round(elapsed, 3), **losses, **{f"lr/{k}": v for k, v in lrs.items()}}) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for key, value in {**{f"loss/{k}": v for k, v in losses.items()}, **{f"lr/{k}": v for k, v in lrs.items()}}.items():
                self.writer.add_scalar(key, value, step)

    def validation(self, step: int, means: dict[str, float], grid: Path | None) -> None:
        """The validation's metric means (``val/<metric>``) and sample grid (``val/samples``) in TensorBoard."""
        if self.writer is None:
            return
        for key, value in means.items():
            self.writer.add_scalar(f"val/{key}", value, step)
        if grid is not None:
            from PIL import Image

            self.writer.add_image("val/samples", np.asarray(Image.open(grid).convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        for handle in (self.bar, self.writer, self.jsonl):
            if handle is not None:
                handle.close()


def tensorboard_writer(folder: Path | None) -> Any:
    """A TensorBoard ``SummaryWriter`` into ``folder`` (None: only check that the extra is installed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.tensorboard needs the tensorboard extra (pip install 'contrafuse[tensorboard]')") from None
    return SummaryWriter(str(folder)) if folder is not None else None


def current_lrs(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
    return {name: float(opt.param_groups[0]["lr"]) for name, opt in optimizers.items()}


# -- checkpoints -----------------------------------------------------------------------------------

def gather_rng_states(process: Process) -> list[dict[str, Any]]:
    state = capture_rng_state()
    if not process.distributed:
        return [state]
    states: list[Any] = [None] * process.world_size
    dist.all_gather_object(states, state)
    return states


def write_checkpoint(
    path: Path, recipe: Recipe, cfg: TrainConfig, models: dict[str, nn.Module], optimizers: dict, schedulers: dict,
    step: int, elapsed: float, process: Process, init: dict[str, str] | None = None,
) -> None:
    rng_states = gather_rng_states(process)  # collective: every process calls it
    if process.is_main:
        save_checkpoint(path, {
            "method": cfg.method,
            "step": step,
            "config": config_to_dict(cfg),
            "models": {k: unwrap(m).state_dict() for k, m in models.items()},
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "recipe": recipe.state_dict(),
            "rng": rng_states,
            "sampler": {"seed": cfg.train.seed, "global_batch": cfg.train.batch_size * process.world_size, "samples_consumed": step * cfg.train.batch_size * process.world_size},
            "world_size": process.world_size,
            "elapsed_s": elapsed,
            "init": init or {},
        })
    if process.distributed:
        dist.barrier()


def resumable(key: str, recipe: Recipe) -> bool:
    """True for a config key whose change a resumed run accepts (see docs/training.md)."""
    if key in NOT_RESUMABLE:
        return False
    return (key in RESUMABLE_CHANGES or key.startswith(RESUMABLE_PREFIXES) or key == "validation"
            or key in ("train.steps", "train.schedule_steps") or key in recipe.length_keys)


def stage_starts(stages: list[Stage]) -> list[tuple[str, int, int]]:
    """(name, first step, end) of each stage."""
    spans, start = [], 0
    for stage in stages:
        spans.append((stage.name, start, start + stage.steps))
        start += stage.steps
    return spans


def check_steps_taken_keep_their_stages(old: list[Stage], new: list[Stage], done: int, path: Path) -> None:
    """An extended run may lengthen its last stages, not move a step already taken to another stage."""
    def at(spans: list[tuple[str, int, int]], step: int) -> tuple[str, int]:
        return next(((name, start) for name, start, end in spans if start <= step < end), ("", -1))

    before, after = stage_starts(old), stage_starts(new)
    probes = {0, done - 1}
    for _, start, end in before + after:  # stages are constant between their boundaries
        probes |= {start, end - 1, end}
    for step in sorted(p for p in probes if 0 <= p < done):
        if at(before, step) != at(after, step):
            raise CheckpointError(f"{path}: the new stage lengths {[(s.name, s.steps) for s in new]} move step {step}, "
                                  f"already taken in {at(before, step)[0]!r}, to another stage; only later steps may change")


def check_resumable(checkpoint: dict[str, Any], cfg: TrainConfig, process: Process, path: Path, recipe: Recipe) -> None:
    """Refuse a checkpoint that is another method's, or whose run the new config would change.

    ``train.steps`` (and the recipe's stage lengths) may grow: the run is extended, keeping
    its learning-rate schedule (``train.schedule_steps`` is set to the original length).
    """
    if checkpoint.get("method") != cfg.method:
        raise CheckpointError(f"{path}: is a {checkpoint.get('method')!r} run, not {cfg.method!r}")
    try:
        old = config_from_dict(type(cfg), checkpoint["config"], where=f"{path}: config")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config does not fit this version's {cfg.method!r} recipe ({exc})") from None
    done = int(checkpoint["step"])
    if done > cfg.train.steps:
        raise CheckpointError(f"{path}: already at step {done}; train.steps {cfg.train.steps} would shorten it "
                              f"(a run can be extended, not shortened)")
    if cfg.train.schedule_steps is None and (old.train.schedule_steps is not None or cfg.train.steps != old.train.steps):
        cfg.train.schedule_steps = planned_steps(old)  # an extended run keeps the schedule planned so far
    changed = [k for k in config_differences(config_to_dict(old), config_to_dict(cfg)) if not resumable(k, recipe)]
    if changed:
        raise CheckpointError(f"{path}: the config differs from the checkpoint's in {changed}; resume with the run's own config")
    if planned_steps(cfg) != planned_steps(old):
        raise CheckpointError(f"{path}: train.schedule_steps {cfg.train.schedule_steps} would change the run's "
                              f"learning-rate schedule (planned for {planned_steps(old)} steps)")
    check_steps_taken_keep_their_stages(recipe.stages(old), recipe.stages(cfg), done, path)
    global_batch = cfg.train.batch_size * process.world_size
    if checkpoint["sampler"]["global_batch"] != global_batch:
        raise CheckpointError(
            f"{path}: written with global batch {checkpoint['sampler']['global_batch']}, now {global_batch} "
            "(keep train.batch_size x number of processes)"
        )


def restore_states(checkpoint: dict[str, Any], recipe: Recipe, models: dict, optimizers: dict, schedulers: dict,
                   path: Path) -> None:
    """Load every saved state; a checkpoint whose states do not fit is a :class:`CheckpointError`."""
    try:
        for name, module in models.items():
            unwrap(module).load_state_dict(checkpoint["models"][name])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(checkpoint["optimizers"][name])
        for name, scheduler in schedulers.items():
            scheduler.load_state_dict(checkpoint["schedulers"][name])
        recipe.load_state_dict(checkpoint.get("recipe") or {})
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        problem = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: its saved states do not fit this {recipe.name!r} run ({problem})") from None


# -- export ----------------------------------------------------------------------------------------

def export_weights(
    out_dir: Path, recipe: Recipe, cfg: TrainConfig, models: dict[str, nn.Module], dataset: Any,
    steps: int, elapsed: float, process: Process, init: dict[str, str] | None = None,
    validation: dict[str, Any] | None = None,
) -> Path:
    """The recipe's inference model as ``out_dir/<model>.safetensors`` with the run's metadata
    (``validation``: the validation that chose these weights, for ``best/``)."""
    module, model_name = recipe.export_model({k: unwrap(m) for k, m in models.items()}, cfg)
    names = list(getattr(dataset, "names", []))
    metadata = {
        "model": model_name,
        "method": cfg.method,
        "config": config_to_json(cfg),
        "steps": str(steps),
        "data": json.dumps({"dataset": cfg.data.dataset, "split": cfg.data.split, "pairs": len(dataset), "names": names}),
        "git_commit": git_commit(),
        "wall_time_s": f"{elapsed:.1f}",
        "device": describe_device(process.device),
        "world_size": str(process.world_size),
        "torch": torch.__version__,
    }
    if init:
        metadata["init"] = json.dumps(init)
    if validation:
        metadata["validation"] = json.dumps(validation)
    return save_weights(module, out_dir / f"{model_name}.safetensors", metadata, overwrite=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the loop --------------------------------------------------------------------------------------

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


def _prepare(cfg: TrainConfig, out_dir: Path, resume: bool, overwrite: bool, process: Process) -> _Prepared:
    """Check the config, the run folder and the checkpoint; build data and models; write nothing."""
    check_loop(cfg)
    recipe = get_recipe(cfg.method)
    recipe.configure(cfg)
    if cfg.train.tensorboard and process.is_main:
        tensorboard_writer(None)  # a missing extra stops the run before it touches the folder
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
