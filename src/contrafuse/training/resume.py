"""Checkpoints and the resume policy: what a checkpoint holds, which config changes a resumed run
accepts (see docs/training.md), and restoring the saved states."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch import nn

from .checkpoint import CheckpointError, save_checkpoint
from .config import ConfigError, TrainConfig, config_from_dict, config_to_dict, planned_steps
from .distributed import Process, gather_rng_states
from .recipe import Recipe, Stage, unwrap

# Config keys that may change when a run is resumed (they do not change the steps it takes).
RESUMABLE_CHANGES = (
    "train.log_every", "train.checkpoint_every", "train.tensorboard", "train.device", "data.workers", "data.root",
    "train.init",  # used only when a run starts
)
# Validation only watches the run; holding pairs out of training changes it.
RESUMABLE_PREFIXES = ("validation.",)
NOT_RESUMABLE = ("validation.holdout",)


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
