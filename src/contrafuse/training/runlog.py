"""What a run reports while it trains: loss averages, the progress bar, ``log.jsonl`` and TensorBoard."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .config import ConfigError, TrainConfig
from .distributed import Process
from .runfolder import LOG_NAME


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


def require_tensorboard() -> None:
    """A :class:`ConfigError` when the tensorboard extra is missing (checked before a run touches its folder)."""
    tensorboard_writer(None)


def current_lrs(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
    return {name: float(opt.param_groups[0]["lr"]) for name, opt in optimizers.items()}
