"""CoCoNet training recipe: two stages on 64x64 patches in [-1, 1] (docs/coconet.md section 3).

* Stage ``base``: L_base (20 x gradient-weighted (1 - SSIM) + entropy-weighted MSE).
* Stage ``contrastive``: L_base + contrast x (L_fg + L_bg), the coupled contrastive loss on
  foreground masks cut with the patches. The same Adam (lr 1e-4, moments included) carries
  over from stage 1, as the official finetuning restores the stage-1 optimiser state.

Masks come from :class:`~contrafuse.data.masks.MaskSource` (a user folder, else the
``ir-saliency-v1`` method on the infrared / functional image). The VGG19 of both roles (the
network's frozen trunk and the loss's feature space) comes from ``vgg.weights`` (a torchvision
ImageNet ``vgg19`` state-dict file, never downloaded) or, by default, the seeded random VGG;
``vgg.source`` is filled in by the recipe and lands in the exported weights' metadata (in the
``config`` entry).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.utils.data import Dataset

from ..color import luma01
from ..data import PairFiles, PatchPairs
from ..data.masks import MaskSource
from ..losses.coconet import (
    ENTROPY_TEMPERATURE, GRADIENT_TEMPERATURE, LOCAL, LOCAL_BRIGHTNESS, MEASURES, SourceWeights, base_loss,
    coupled_contrastive_loss,
)
from ..models import create_model
from ..models.vgg import DEFAULT_VGG_SEED, VGGLossFeatures, vgg_source_description
from .config import ConfigError, DataConfig, LoopConfig, TrainConfig, check_betas, check_rate, finite, planned_steps, require
from .schedules import WarmupMultiStep, fraction_milestones
from .recipe import (Batch, Losses, Models, Optimizers, Recipe, Stage, models_trained_by, register_recipe,
                     registered_weights, training_pairs, unwrap)



@dataclass
class CoCoNetStages:
    base_steps: int = 4000
    contrastive_steps: int = 800  # base_steps + contrastive_steps must equal train.steps


@dataclass
class CoCoNetOptim:
    """Adam; the official rate is constant (no milestones, no warm-up)."""

    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    milestones: list[float] = field(default_factory=list)  # fractions of train.steps where lr *= gamma
    gamma: float = 0.1
    warmup_steps: int = 0  # linear warm-up: fresh Adam moments on --init weights


@dataclass
class CoCoNetLoss:
    # what the data-sensitive weights measure: "local" (ours: per-pixel edge richness after a
    # light low-pass plus local brightness, docs/coconet.md), "official" (per-patch Sobel gradient
    # and histogram entropy, the released code), "coarse4" (the official measures on a 4x pooled patch)
    measure: str = LOCAL
    brightness: float = LOCAL_BRIGHTNESS  # weight of the local brightness in the "local" measure
    # softmax temperatures of the gradient (SSIM) and entropy (MSE) weights; None: the measure's own
    # (official 0.5 / 0.75, the released settings; local 0.25 / 0.25, chosen by the pixel-optimum probe)
    c1: float | None = None
    c2: float | None = None
    contrast: float = 1.0  # weight of L_fg + L_bg in stage 2


@dataclass
class CoCoNetVgg:
    weights: str | None = None  # torchvision vgg19 state dict (.pth/.safetensors); None: seeded random VGG
    seed: int = DEFAULT_VGG_SEED
    source: str = ""  # filled in by the recipe: what the VGG was (recorded in the weights' metadata)


@dataclass
class CoCoNetMasks:
    folder: str | None = None  # user masks, matched by pair name or infrared file stem
    cache: str | None = None  # folder caching the computed ir-saliency masks; None: compute per run


@dataclass
class CoCoNetConfig(TrainConfig):
    method: str = "coconet"
    data: DataConfig = field(default_factory=lambda: DataConfig(patch_size=64, flips=False))
    train: LoopConfig = field(default_factory=lambda: LoopConfig(steps=4800, batch_size=30))
    stages: CoCoNetStages = field(default_factory=CoCoNetStages)
    optim: CoCoNetOptim = field(default_factory=CoCoNetOptim)
    loss: CoCoNetLoss = field(default_factory=CoCoNetLoss)
    vgg: CoCoNetVgg = field(default_factory=CoCoNetVgg)
    masks: CoCoNetMasks = field(default_factory=CoCoNetMasks)
    model_name: str = "coconet"  # registry name of the export: coconet or coconet-medical


MEASURE_TEMPERATURES = {LOCAL: (0.25, 0.25)}  # other measures: the released (GRADIENT_, ENTROPY_TEMPERATURE)


def loss_temperatures(loss: CoCoNetLoss) -> tuple[float, float]:
    """(c1, c2) of a loss section: the values set, else the measure's defaults."""
    c1, c2 = MEASURE_TEMPERATURES.get(loss.measure, (GRADIENT_TEMPERATURE, ENTROPY_TEMPERATURE))
    return (c1 if loss.c1 is None else loss.c1), (c2 if loss.c2 is None else loss.c2)


def check_config(cfg: CoCoNetConfig) -> None:
    """Range checks of the CoCoNet sections (the engine checks the shared ones)."""
    check_rate(cfg.optim.lr, "optim.lr")
    check_betas(cfg.optim.betas, "optim.betas")
    o = cfg.optim
    require(finite(o.gamma) and o.gamma > 0, "optim.gamma", "a finite number > 0", o.gamma)
    require(all(finite(m) and 0 <= m <= 1 for m in o.milestones), "optim.milestones", "fractions of the run in [0, 1]", o.milestones)
    require(isinstance(o.warmup_steps, int) and o.warmup_steps >= 0, "optim.warmup_steps", "a whole number >= 0", o.warmup_steps)
    require(cfg.loss.measure in (LOCAL, *MEASURES), "loss.measure", f"one of {', '.join((LOCAL, *MEASURES))}", cfg.loss.measure)
    for key in ("c1", "c2", "contrast", "brightness"):
        value = getattr(cfg.loss, key)
        if value is None and key in ("c1", "c2"):
            continue
        require(finite(value) and value >= 0, f"loss.{key}", "a finite number >= 0", value)
    s = cfg.stages
    if s.base_steps < 0 or s.contrastive_steps < 0 or s.base_steps + s.contrastive_steps != cfg.train.steps:
        raise ConfigError(
            f"stages.base_steps ({s.base_steps}) + stages.contrastive_steps ({s.contrastive_steps}) "
            f"must equal train.steps ({cfg.train.steps}), both non-negative"
        )
    trained = models_trained_by(CoCoNetRecipe.name)
    if cfg.model_name not in trained:
        raise ConfigError(f"model_name must be one of {', '.join(trained)}, got {cfg.model_name!r}")
    if cfg.data.patch_size % 8:
        raise ConfigError(f"data.patch_size must be a multiple of 8 (three poolings), got {cfg.data.patch_size}")


def masked_patch_pairs(pairs: Sequence[PairFiles], patch_size: int, flips: bool, masks: MaskSource) -> PatchPairs:
    """:class:`PatchPairs` whose items also hold ``mask`` ``(1, P, P)`` float32 in {0, 1}: the
    pair's foreground mask (of the infrared image) cut with the same crop and flips."""
    dataset = PatchPairs(pairs, patch_size, flips)
    dataset.add_plane("mask", [masks.mask_for(p.ir, luma01(loaded.ir, np.float32), p.name) for p, loaded in zip(dataset.pairs, dataset.loaded)])
    return dataset


@torch.no_grad()
def region_watches(fused: Tensor, *, ir: Tensor, vis: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Whether the output follows the coupled constraint, 0-255 grey levels on [-1, 1] patches:
    ``fg_ir`` = mean |F - IR| inside the masks, ``bg_vis`` = mean |F - VIS| outside them."""
    fused, inside = fused.detach(), mask.to(fused.dtype)
    outside = 1.0 - inside
    fg = ((fused - ir).abs() * inside).sum() / inside.sum().clamp_min(1.0)
    bg = ((fused - vis).abs() * outside).sum() / outside.sum().clamp_min(1.0)
    return {"fg_ir": fg * 127.5, "bg_vis": bg * 127.5}


def weight_watches(weights: SourceWeights) -> dict[str, Tensor]:
    """Batch means of the data-sensitive weights of the visible source (the infrared's are 1 - these)."""
    return {"wg_vis": weights.gradient_vis.mean(), "we_vis": weights.entropy_vis.mean()}


@register_recipe
class CoCoNetRecipe(Recipe):
    name = "coconet"
    config_class = CoCoNetConfig
    length_keys = ("stages.base_steps", "stages.contrastive_steps")

    def configure(self, cfg: CoCoNetConfig) -> None:
        check_config(cfg)
        cfg.vgg.source = vgg_source_description(cfg.vgg.weights, cfg.vgg.seed)
        self.cfg = cfg
        self._loss_features: VGGLossFeatures | None = None

    def stages(self, cfg: CoCoNetConfig) -> list[Stage]:
        stages = [Stage("base", cfg.stages.base_steps), Stage("contrastive", cfg.stages.contrastive_steps)]
        return [s for s in stages if s.steps > 0]

    def build_models(self, cfg: CoCoNetConfig) -> dict[str, nn.Module]:
        return {"net": self._registered(cfg).backbone}

    @staticmethod
    def _registered(cfg: CoCoNetConfig) -> nn.Module:
        return create_model(cfg.model_name, weights=None, vgg_weights=cfg.vgg.weights, vgg_seed=cfg.vgg.seed)

    def build_optimizers(
        self, models: dict[str, nn.Module], cfg: CoCoNetConfig
    ) -> tuple[dict[str, Optimizer], dict[str, LRScheduler]]:
        trainable = [p for p in models["net"].parameters() if p.requires_grad]  # not the frozen VGG trunk
        betas = (float(cfg.optim.betas[0]), float(cfg.optim.betas[1]))
        optimizer = Adam(trainable, lr=cfg.optim.lr, betas=betas)
        o = cfg.optim
        if not o.milestones and not o.warmup_steps:
            return {"net": optimizer}, {}
        factor = WarmupMultiStep(fraction_milestones(o.milestones, planned_steps(cfg)), o.gamma, o.warmup_steps)
        return {"net": optimizer}, {"net": LambdaLR(optimizer, factor)}

    def build_dataset(self, cfg: CoCoNetConfig, split: str) -> Dataset:
        check_config(cfg)
        masks = MaskSource(cfg.masks.folder, cfg.masks.cache)
        return masked_patch_pairs(training_pairs(cfg, split), cfg.data.patch_size, cfg.data.flips, masks)

    def init_weights(self, models: dict[str, nn.Module], weights: str, cfg: CoCoNetConfig) -> Path:
        """The network from CoCoNet inference weights of ``model_name`` (its frozen VGG trunk included)."""
        model, path = registered_weights(cfg.model_name, weights, vgg_weights=cfg.vgg.weights, vgg_seed=cfg.vgg.seed)
        models["net"].load_state_dict(model.backbone.state_dict())
        return path

    def loss_features(self, device: torch.device) -> VGGLossFeatures:
        """The contrastive feature space: built on first use (deterministic, so not checkpointed)."""
        if self._loss_features is None:
            self._loss_features = VGGLossFeatures(self.cfg.vgg.weights, self.cfg.vgg.seed).to(device)
        return self._loss_features

    def training_step(self, models: Models, optimizers: Optimizers, batch: Batch, step: int, stage: Stage) -> Losses:
        cfg: CoCoNetConfig = self.cfg
        vis, ir = batch["vis"] * 2 - 1, batch["ir"] * 2 - 1
        fused = models["net"](ir=ir, vis=vis)
        c1, c2 = loss_temperatures(cfg.loss)
        base = base_loss(fused, ir=ir, vis=vis, gradient_temperature=c1, entropy_temperature=c2,
                         measure=cfg.loss.measure, brightness=cfg.loss.brightness)
        losses: dict[str, Any] = {"base": base.total.detach(), "ssim": base.structure.detach(),
                                  "intensity": base.intensity.detach(), **region_watches(fused, ir=ir, vis=vis, mask=batch["mask"]),
                                  **weight_watches(base.weights)}
        total = base.total
        if stage.name == "contrastive":
            features = self.loss_features(fused.device)
            contrast = coupled_contrastive_loss(fused, ir=ir, vis=vis, mask=batch["mask"], features=features,
                                                layer_weights=features.layer_weights)
            total = total + cfg.loss.contrast * contrast.total
            losses.update(contrast_fg=contrast.foreground.detach(), contrast_bg=contrast.background.detach())
        optimizers["net"].zero_grad(set_to_none=True)
        total.backward()
        optimizers["net"].step()
        losses["total"] = total.detach()
        return losses

    def export_model(self, models: dict[str, nn.Module], cfg: CoCoNetConfig) -> tuple[nn.Module, str]:
        model = self._registered(cfg)
        model.backbone.load_state_dict(unwrap(models["net"]).state_dict())
        return model.eval(), cfg.model_name
