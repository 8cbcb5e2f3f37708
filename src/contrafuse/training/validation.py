"""Validation during training: fuse held-out pairs with the current weights, score them with the
metrics suite, and keep a small grid of fused samples.

Written into the run folder (main process only)::

    validation.jsonl                 one line per validation: step, pairs, failed, metric means, score
    validation/fused/<pair>.png      the latest validation's fused images (gray, what was scored)
    validation/step_000100.png       sample grid: one row per sample pair, columns IR | VIS | fused
    validation/panel.json            with a panel: its models' metric means and ranks (made once per run)
    validation/panel/<model>/...     the panel's fused images

The score of a validation (``score`` in the log, lower is better):

* with ``validation.panel``: the mean rank of the current weights among the panel's models over
  ``validation.score_metrics`` (each metric's mean over the pairs ranks the models; ties share
  the average rank; 1 is best on every metric);
* without one: minus the mean relative gain over ``score_metrics`` since the run's first
  validation (each metric's gain is signed so that better is positive).

and, with ``train.tensorboard``, the same means as ``val/<metric>`` scalars and the grid as the
``val/samples`` image. A validation leaves every random number generator as it found it, so a
run with validation takes the same training steps as one without (and resumes exactly).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .. import metrics
from ..atomic import write_bytes, write_text
from ..bench.summary import best_and_ranks
from ..data import dataset_info, folder_modalities
from ..evaluation import finite_or_none, mean_and_std, score_many
from ..options import FuseOptions
from ..session import Fuser
from ..io import PairFiles, read_image, write_image
from ..panels import contact_sheet
from .checkpoint import capture_rng_state, restore_rng_state
from .config import TrainConfig

LOG_NAME = "validation.jsonl"
FOLDER = "validation"
PANEL_FILE = "panel.json"
CURRENT = "current"  # the weights being validated, in the panel's table
SAMPLE_WIDTH = 256  # pixels per cell of the sample grid


@dataclass
class ValidationResult:
    """One validation: the step, metric means over the pairs scored, failures, the grid file."""

    step: int
    means: dict[str, float]
    scored: int
    failed: dict[str, str]
    grid: Path | None
    score: float = math.nan

    def record(self) -> dict[str, Any]:
        """The ``validation.jsonl`` line (non-finite values as null)."""
        return {"step": self.step, "pairs": self.scored, "failed": len(self.failed),
                **{k: finite_or_none(v) for k, v in self.means.items()}, "score": finite_or_none(self.score)}


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of ``uint8`` pixels."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class Validator:
    """Validates ``pairs`` with a recipe's exported module; see the module doc for the outputs."""

    def __init__(self, cfg: TrainConfig, pairs: list[PairFiles], out_dir: Path, device: torch.device) -> None:
        self.cfg, self.pairs, self.out_dir, self.device = cfg, pairs, out_dir, device
        self.score_names = metrics.resolve_names(cfg.validation.score_metrics)
        self.names = list(dict.fromkeys([*metrics.resolve_names(cfg.validation.metrics), *self.score_names]))
        self.options = FuseOptions(color="gray")  # the usual protocol: metrics on gray outputs
        self.titles = [*modalities(cfg), "fused"]
        self.panel: dict[str, dict[str, float]] | None = None
        self.first: dict[str, float] | None = None  # the run's first validation means (score without a panel)

    def resume(self, lines: list[str]) -> None:
        """Take up a resumed run's earlier validations (the first one anchors a panel-less score)."""
        if lines and self.first is None:
            record = json.loads(lines[0])
            self.first = {k: float(record[k]) if record.get(k) is not None else math.nan for k in self.score_names}

    def due(self, done: int) -> bool:
        """True when step count ``done`` is a validation step (every N steps and the last one)."""
        every = self.cfg.validation.every
        return every > 0 and (done % every == 0 or done == self.cfg.train.steps)

    def run(self, build_module: Callable[[], nn.Module], step: int) -> ValidationResult:
        """Fuse, score and draw the samples with the module ``build_module()`` returns (the
        registered inference model holding the current weights)."""
        state = capture_rng_state()  # building and fusing must not move any generator the training draws from
        try:
            return self._validate(build_module().to(self.device).eval(), step)
        finally:
            restore_rng_state(state)

    def _validate(self, module: nn.Module, step: int) -> ValidationResult:
        if self.cfg.validation.panel and self.panel is None:
            self.panel = self._panel_means()
        means, scored, failed, samples = self._fuse_and_score(module, self.out_dir / FOLDER / "fused", self.cfg.validation.samples)
        grid = None
        if samples:
            sheet = contact_sheet(samples, self.titles, SAMPLE_WIDTH)  # one row per sample: IR | VIS | fused
            grid = write_bytes(self.out_dir / FOLDER / f"step_{step:06d}.png", png_bytes(sheet), overwrite=True)
        return ValidationResult(step, means, scored, failed, grid, self.score(means))

    def score(self, means: dict[str, float]) -> float:
        """The validation score of metric ``means`` (module doc); lower is better."""
        if self.panel is not None:
            table = {**self.panel, CURRENT: means}
            return best_and_ranks(table, self.score_names, list(table))[1][CURRENT]
        if self.first is None:
            self.first = {k: means.get(k, math.nan) for k in self.score_names}
        gains = []
        for name in self.score_names:
            start, now = self.first.get(name, math.nan), means.get(name, math.nan)
            if math.isfinite(start) and math.isfinite(now) and start != 0:
                sign = 1.0 if metrics.metric_info(name).direction == "higher" else -1.0
                gains.append(sign * (now - start) / abs(start))
        return -float(np.mean(gains)) if gains else math.nan

    def _panel_means(self) -> dict[str, dict[str, float]]:
        """Fuse and score the pairs once with every panel model, or read what an earlier start of this run made."""
        path = self.out_dir / FOLDER / PANEL_FILE
        key = {"pairs": [p.name for p in self.pairs], "panel": list(self.cfg.validation.panel), "metrics": self.names,
               "convention": self.cfg.validation.convention}
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return {m: {k: math.nan if v is None else float(v) for k, v in row.items()} for m, row in saved["means"].items()}
        from ..models import create_model

        panel = {}
        for entry in self.cfg.validation.panel:
            name, _, weights = entry.partition("=")
            model = create_model(name, weights=weights or "default", device=self.device)
            label = f"{name}={Path(weights).stem}" if weights else name
            panel[label], *_ = self._fuse_and_score(model, self.out_dir / FOLDER / "panel" / label, 0)
        ranks = best_and_ranks(panel, self.score_names, list(panel))[1] if len(panel) > 1 else {}
        record = {"key": key, "means": {m: {k: finite_or_none(v) for k, v in row.items()} for m, row in panel.items()},
                  "ranks_among_panel": ranks}
        write_text(path, json.dumps(record, indent=1) + "\n", overwrite=True)
        return panel

    def _fuse_and_score(self, module: nn.Module, folder: Path, samples_wanted: int) -> tuple[dict[str, float], int, dict[str, str], list]:
        fused_files, sources = [], []
        samples = []
        fuser = Fuser(module, device=self.device, options=self.options)
        for index, pair in enumerate(self.pairs):
            ir, vis = read_image(pair.ir), read_image(pair.vis)
            fused = fuser.pair(ir=ir, vis=vis, names=(str(pair.ir), str(pair.vis)))
            fused_files.append(write_image(folder / f"{pair.name.replace('/', '_')}.png", fused, overwrite=True))
            sources.append(pair)
            if index < samples_wanted:
                samples.append([ir, vis, fused])
        scores = score_many(fused_files, ir=[p.ir for p in sources], vis=[p.vis for p in sources], names=self.names,
                            convention=self.cfg.validation.convention, progress=False)
        failed = {p.name: s.error or "" for p, s in zip(sources, scores) if not s.ok}
        stats = mean_and_std([s.values for s in scores if s.ok], self.names)
        return stats.mean, stats.count, failed, samples


def modalities(cfg: TrainConfig) -> tuple[str, str]:
    """Titles of the two sources: the named dataset's modalities (PET/MRI, ...), else IR/VIS."""
    v = cfg.validation
    if v.ir_dir and v.vis_dir:
        return folder_modalities(v.ir_dir, v.vis_dir)
    if cfg.data.dataset == "folders":
        return folder_modalities(cfg.data.ir_dir or "", cfg.data.vis_dir or "")
    return dataset_info(cfg.data.dataset).modalities


class ValidationLog:
    """``validation.jsonl``, rewritten atomically with every new line (validations are few)."""

    def __init__(self, out_dir: Path, keep_until: int | None) -> None:
        """Starts empty, or (``keep_until``: a resumed run's step) with the earlier lines up to that step."""
        self.path = out_dir / LOG_NAME
        self.lines = read_jsonl(self.path, keep_until) if keep_until is not None else []

    def add(self, result: ValidationResult) -> bool:
        """Append ``result``; True when its score is the best (lowest) of the run so far."""
        best = self.best_score()
        self.lines.append(json.dumps(result.record()))
        write_text(self.path, "\n".join(self.lines) + "\n", overwrite=True)
        return math.isfinite(result.score) and (best is None or result.score < best)

    def best_score(self) -> float | None:
        """The lowest finite score logged so far, or None."""
        scores = [json.loads(line).get("score") for line in self.lines]
        finite = [float(s) for s in scores if isinstance(s, (int, float)) and math.isfinite(s)]
        return min(finite) if finite else None


def read_jsonl(path: Path, last_step: int) -> list[str]:
    """The lines of a JSON-lines log whose ``step`` is at most ``last_step`` (unreadable lines dropped)."""
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            continue  # e.g. half a line written when the process was killed
        if isinstance(step, int) and step <= last_step:
            kept.append(line)
    return kept
