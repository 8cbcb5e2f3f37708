"""The training engine shared by every method: loop, devices, DDP, data, checkpoints, logs, export.

Runs unchanged alone (CPU or one GPU) or under ``torchrun`` (one process per device,
DistributedDataParallel over gloo on CPU or nccl on GPU; global batch = ``train.batch_size`` x
world size). What differs between methods comes from the recipe (see ``recipe.py``).
"""
from __future__ import annotations

import atexit
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
from .config import ConfigError, TrainConfig, apply_overrides, config_from_dict, config_to_dict, config_to_json, read_yaml
from .recipe import Recipe, Stage, get_recipe, unwrap
from .sampling import SampleStream

# Config keys that may change when a run is resumed (they do not change the result).
RESUMABLE_CHANGES = (
    "train.log_every", "train.checkpoint_every", "train.tensorboard", "train.device", "data.workers", "data.root",
)

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

        self.bar = tqdm(total=total, initial=start, desc=f"train {cfg.method}", unit="step", dynamic_ncols=True)
        self.jsonl = open(out_dir / "log.jsonl", "a")
        if cfg.train.tensorboard:
            self.writer = tensorboard_writer(out_dir / "tensorboard")

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

    def close(self) -> None:
        for handle in (self.bar, self.writer, self.jsonl):
            if handle is not None:
                handle.close()


def tensorboard_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.tensorboard needs the tensorboard extra (pip install 'contrafuse[tensorboard]')") from None
    return SummaryWriter(str(folder))


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
    step: int, elapsed: float, process: Process,
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
        })
    if process.distributed:
        dist.barrier()


def check_resumable(checkpoint: dict[str, Any], cfg: TrainConfig, process: Process, path: Path) -> None:
    if checkpoint.get("method") != cfg.method:
        raise CheckpointError(f"{path}: is a {checkpoint.get('method')!r} run, not {cfg.method!r}")
    changed = [k for k in config_differences(checkpoint["config"], config_to_dict(cfg)) if k not in RESUMABLE_CHANGES]
    if changed:
        raise CheckpointError(f"{path}: the config differs from the checkpoint's in {changed}; resume with the run's own config")
    if checkpoint["step"] > cfg.train.steps:
        raise CheckpointError(f"{path}: already at step {checkpoint['step']} > train.steps {cfg.train.steps}")
    global_batch = cfg.train.batch_size * process.world_size
    if checkpoint["sampler"]["global_batch"] != global_batch:
        raise CheckpointError(
            f"{path}: written with global batch {checkpoint['sampler']['global_batch']}, now {global_batch} "
            "(keep train.batch_size x number of processes)"
        )


def restore_states(checkpoint: dict[str, Any], recipe: Recipe, models: dict, optimizers: dict, schedulers: dict) -> None:
    for name, module in models.items():
        unwrap(module).load_state_dict(checkpoint["models"][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(checkpoint["optimizers"][name])
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(checkpoint["schedulers"][name])
    recipe.load_state_dict(checkpoint.get("recipe") or {})


# -- export ----------------------------------------------------------------------------------------

def export_weights(
    out_dir: Path, recipe: Recipe, cfg: TrainConfig, models: dict[str, nn.Module], dataset: Any,
    steps: int, elapsed: float, process: Process,
) -> Path:
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
    return save_weights(module, out_dir / f"{model_name}.safetensors", metadata, overwrite=True)


# -- the loop --------------------------------------------------------------------------------------

def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    on_step_end: StepCallback | None = None,
) -> TrainResult:
    """Train ``cfg.method`` for ``cfg.train.steps`` steps into ``out_dir``; see docs/training.md.

    ``resume`` continues from ``out_dir/checkpoint.pt`` when it exists (the run's RNG, data
    position, optimisers and schedulers included), else starts at step 0. ``on_step_end(step,
    losses)`` is called after every step (losses as floats only on logging steps, else {}).
    """
    out_dir = Path(out_dir)
    return _run(cfg, out_dir, resume, on_step_end, setup_process(cfg.train.device))


def _run(cfg: TrainConfig, out_dir: Path, resume: bool, on_step_end: StepCallback | None, process: Process) -> TrainResult:
    started = time.perf_counter()
    recipe = get_recipe(cfg.method)
    recipe.configure(cfg)
    stages = recipe.stages(cfg)
    check_stages(stages, cfg.train.steps)
    torch.backends.cudnn.benchmark = not cfg.train.deterministic
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    checkpoint = load_checkpoint(checkpoint_path) if resume and checkpoint_path.is_file() else None
    if checkpoint is not None:
        check_resumable(checkpoint, cfg, process, checkpoint_path)
    elif resume and process.is_main:
        print(f"no checkpoint in {out_dir}; starting at step 0")

    dataset = recipe.build_dataset(cfg, cfg.data.split)  # bad data stops here, before any step
    seed_everything(cfg.train.seed)  # the same initial weights in every process
    models = place_models(recipe.build_models(cfg), process.device, cfg.train.channels_last)
    optimizers, schedulers = recipe.build_optimizers(models, cfg)
    start, elapsed_before = 0, 0.0
    seed_everything(cfg.train.seed + 1 + process.rank)  # per-process randomness inside steps
    if checkpoint is not None:
        restore_states(checkpoint, recipe, models, optimizers, schedulers)
        start, elapsed_before = int(checkpoint["step"]), float(checkpoint.get("elapsed_s", 0.0))
        if checkpoint["world_size"] == process.world_size:
            restore_rng_state(checkpoint["rng"][process.rank])
        elif process.is_main:
            print("resuming with a different number of processes: data stay exact, other RNG streams restart")
    models = wrap_distributed(models, process)
    if process.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    log = RunLog(out_dir, cfg, process, start, cfg.train.steps)
    meter, last = LossMeter(), {}
    try:
        loader = iter(make_loader(dataset, cfg, process, start)) if start < cfg.train.steps else iter(())
        for step in range(start, cfg.train.steps):
            stage, stage_start = stage_of(stages, step)
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
                logged = last = meter.averages(process)
                log.record(done, logged, current_lrs(optimizers), elapsed_before + time.perf_counter() - started)
            if done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps:
                elapsed = elapsed_before + time.perf_counter() - started
                write_checkpoint(checkpoint_path, recipe, cfg, models, optimizers, schedulers, done, elapsed, process)
            if on_step_end is not None:
                on_step_end(step, logged)
    finally:
        log.close()

    elapsed = elapsed_before + time.perf_counter() - started
    weights = None
    if process.is_main:
        weights = export_weights(out_dir, recipe, cfg, models, dataset, cfg.train.steps, elapsed, process)
    return TrainResult(out_dir, weights, checkpoint_path, cfg.train.steps, last)
