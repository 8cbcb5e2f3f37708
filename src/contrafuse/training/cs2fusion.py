"""CS2Fusion training recipe: backbone + compensation perception network, two Adam optimisers.

One step, in the authors' order: backbone zero_grad, L_f backward, backbone step, CPN
zero_grad, L_c backward, CPN step. What we compute differently from the authors' train.py,
with the same result:

* The occluded ("augmented") pass runs only the visible encoder, without gradients: the
  infrared branch sees the same patch as in the first pass (its levels are reused), the
  decoder output of that pass is never used, and the CPN's inputs are detached anyway.
* P enters L_f detached: the CPN gradients L_f would produce are zeroed before use.
* SSO features (parameter-free, on detached inputs) are computed once each, without autograd.
* In the CPN's embedding conv the half that sees the unchanged infrared branch is shared by
  both pairs (``CompensationPerceptionNet.with_visible_replaced``), so the occluded pair costs
  half a CPN conv.

Not in the authors' method: ``loss.prior_steps`` / ``loss.prior_weight`` / ``loss.prior_gamma`` /
``loss.prior_shape`` / ``loss.prior_softness`` add the compensation prior
(:func:`~contrafuse.losses.cs2fusion.compensation_prior_loss`) to the CPN's loss; off by default,
on in the shipped config (docs/training.md). ``loss.backbone_weights: prior`` weighs the backbone
loss by the prior map itself instead of the CPN's (the fine-tune config: a fresh CPN's map is
near an average of the sources for its first hundreds of steps).

The visible patch goes into the visible encoder, as in the authors' test script and our
inference wrapper ``Cs2Fusion`` (their train.py fed the infrared patch into that branch), so
the exported weights run as they were trained.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.utils.data import Dataset

from ..data import OcclusionPolicy, PatchPairs, occlude
from ..losses.cs2fusion import (AUGMENTED_POSITIVES, PRIOR_SHAPES, backbone_loss, compensation_prior_loss,
                                compensation_prior_target, cpn_contrastive_loss)
from ..models import create_model
from ..models.cs2fusion import CompensationPerceptionNet, sso_features, stack_levels
from .config import ConfigError, DataConfig, TrainConfig, check_betas, check_rate, finite, planned_steps, require
from .recipe import (Batch, Losses, Models, Optimizers, Recipe, Stage, register_recipe, registered_weights, training_pairs,
                     unwrap)
from .schedules import WarmupMultiStep, fraction_milestones


@dataclass
class Cs2FusionOptim:
    """Adam for each network, MultiStepLR in steps (milestones as fractions of ``train.steps``)."""

    lr_backbone: float = 2e-3
    lr_cpn: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    milestones: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    gamma: float = 0.1
    warmup_steps: int = 0  # linear warm-up of both learning rates
    backbone_delay_steps: int = 0  # the backbone holds still first (a fine-tune: while the fresh CPN fits its prior)


BACKBONE_WEIGHTS = ("cpn", "prior")


@dataclass
class Cs2FusionLoss:
    k: float = 2.0  # weight of L_c2 (the authors' "lambda")
    alpha: float = 0.25  # SimMax rank-weight decay
    augmented_positive: str = "paper"  # "paper" or "code" (see losses.cs2fusion)
    ssim_window: int = 3
    ssim_max_val: float = 1.0  # the authors' kornia default on 0-255 data
    prior_steps: int = 0  # the CPN's first steps fit P to the prior alone instead of L_c
    prior_weight: float = 0.0  # after them, L_c + prior_weight * that prior
    prior_gamma: float = 1.0  # the "difference" prior is minmax(I_ir - I_vis) ** prior_gamma; higher -> lower P
    prior_shape: str = "difference"  # or "brighter": sigmoid((I_ir - I_vis) / prior_softness)
    prior_softness: float = 10.0  # grey levels (0-255), for the "brighter" prior
    backbone_weights: str = "cpn"  # P in L_f: the CPN's map (the method), or "prior": the prior map itself


@dataclass
class Cs2FusionConfig(TrainConfig):
    method: str = "cs2fusion"
    data: DataConfig = field(default_factory=lambda: DataConfig(patch_size=128))
    optim: Cs2FusionOptim = field(default_factory=Cs2FusionOptim)
    loss: Cs2FusionLoss = field(default_factory=Cs2FusionLoss)
    occlusion: OcclusionPolicy = field(default_factory=OcclusionPolicy)


def check_config(cfg: Cs2FusionConfig) -> None:
    """Range checks of the CS2Fusion sections (the engine checks the shared ones)."""
    o = cfg.optim
    check_rate(o.lr_backbone, "optim.lr_backbone")
    check_rate(o.lr_cpn, "optim.lr_cpn")
    check_betas(o.betas, "optim.betas")
    require(finite(o.gamma) and o.gamma > 0, "optim.gamma", "a finite number > 0", o.gamma)
    require(all(finite(m) and 0 <= m <= 1 for m in o.milestones), "optim.milestones", "fractions of the run in [0, 1]", o.milestones)
    require(o.warmup_steps >= 0, "optim.warmup_steps", ">= 0", o.warmup_steps)
    require(o.backbone_delay_steps >= 0, "optim.backbone_delay_steps", ">= 0", o.backbone_delay_steps)
    require(finite(cfg.loss.k) and finite(cfg.loss.alpha), "loss.k and loss.alpha", "finite numbers", (cfg.loss.k, cfg.loss.alpha))
    if cfg.loss.augmented_positive not in AUGMENTED_POSITIVES:
        raise ConfigError(f"loss.augmented_positive must be one of {AUGMENTED_POSITIVES}, got {cfg.loss.augmented_positive!r}")
    if cfg.loss.prior_steps < 0 or cfg.loss.prior_weight < 0:
        raise ConfigError(f"loss.prior_steps and loss.prior_weight must be >= 0, got {cfg.loss.prior_steps}, {cfg.loss.prior_weight}")
    if cfg.loss.prior_gamma <= 0:
        raise ConfigError(f"loss.prior_gamma must be > 0, got {cfg.loss.prior_gamma}")
    require(cfg.loss.prior_shape in PRIOR_SHAPES, "loss.prior_shape", f"one of {', '.join(PRIOR_SHAPES)}", cfg.loss.prior_shape)
    require(finite(cfg.loss.prior_softness) and cfg.loss.prior_softness > 0, "loss.prior_softness",
            "a finite number of grey levels > 0", cfg.loss.prior_softness)
    require(cfg.loss.backbone_weights in BACKBONE_WEIGHTS, "loss.backbone_weights", f"one of {', '.join(BACKBONE_WEIGHTS)}",
            cfg.loss.backbone_weights)
    try:
        cfg.occlusion.check()
    except ValueError as exc:
        raise ConfigError(f"occlusion: {exc}") from None


class AddOccludedVisible:
    """Dataset transform adding ``vis_occluded``: the visible patch with random black squares."""

    def __init__(self, policy: OcclusionPolicy) -> None:
        self.policy = policy

    def __call__(self, item: dict[str, Any], rng: Any) -> dict[str, Any]:
        item["vis_occluded"] = occlude(item["vis"], rng, self.policy)
        return item


@dataclass
class Cs2FusionViews:
    """The tensors one step needs."""

    fused: Tensor
    compensation: Tensor
    sso_ir: Tensor
    sso_vis: Tensor
    embedding_ir: Tensor
    embedding_vis: Tensor
    sso_vis_occluded: Tensor
    embedding_ir_occluded: Tensor | None


def forward_views(
    backbone: nn.Module, cpn: nn.Module, *, ir: Tensor, vis: Tensor, vis_occluded: Tensor, need_occluded_embedding: bool
) -> Cs2FusionViews:
    """Both passes of a step on 0-255 ``(B, 1, H, W)`` inputs (module doc: what is skipped and why)."""
    out = backbone(ir=ir, vis=vis)
    with torch.no_grad():
        levels_occluded = unwrap(backbone).encoder_vis(vis_occluded)
        sso_vis, sso_ir = sso_features(out.levels_vis), sso_features(out.levels_ir)
        sso_vis_occluded = sso_features(levels_occluded)
    features = out.features.detach()
    half = features.shape[1] // 2
    replaced = stack_levels(levels_occluded) if need_occluded_embedding else None
    maps = cpn(features_vis=features[:, :half], features_ir=features[:, half:], replaced_vis=replaced)
    return Cs2FusionViews(out.fused, maps[0].map, sso_ir, sso_vis, maps[0].embedding_ir, maps[0].embedding_vis,
                          sso_vis_occluded, maps[1].embedding_ir if need_occluded_embedding else None)


@register_recipe
class Cs2FusionRecipe(Recipe):
    name = "cs2fusion"
    config_class = Cs2FusionConfig

    def configure(self, cfg: Cs2FusionConfig) -> None:
        check_config(cfg)
        self.cfg = cfg

    def build_models(self, cfg: Cs2FusionConfig) -> dict[str, nn.Module]:
        check_config(cfg)
        return {"backbone": create_model("cs2fusion", weights=None).backbone, "cpn": CompensationPerceptionNet()}

    def build_optimizers(
        self, models: dict[str, nn.Module], cfg: Cs2FusionConfig
    ) -> tuple[dict[str, Optimizer], dict[str, LRScheduler]]:
        o = cfg.optim
        betas = (float(o.betas[0]), float(o.betas[1]))
        optimizers = {
            "backbone": Adam(models["backbone"].parameters(), lr=o.lr_backbone, betas=betas),
            "cpn": Adam(models["cpn"].parameters(), lr=o.lr_cpn, betas=betas),
        }
        milestones = fraction_milestones(o.milestones, planned_steps(cfg))
        delays = {"backbone": o.backbone_delay_steps, "cpn": 0}
        schedulers = {
            name: LambdaLR(opt, WarmupMultiStep(milestones, o.gamma, o.warmup_steps, delays[name]))
            for name, opt in optimizers.items()
        }
        return optimizers, schedulers

    def build_dataset(self, cfg: Cs2FusionConfig, split: str) -> Dataset:
        check_config(cfg)
        pairs = training_pairs(cfg, split)
        return PatchPairs(pairs, cfg.data.patch_size, cfg.data.flips, AddOccludedVisible(cfg.occlusion))

    def init_weights(self, models: dict[str, nn.Module], weights: str, cfg: Cs2FusionConfig) -> Path:
        """The backbone from CS2Fusion inference weights (ours or the authors'); the CPN, which
        inference weights do not hold, keeps its fresh initialisation."""
        model, path = registered_weights("cs2fusion", weights)
        models["backbone"].load_state_dict(model.backbone.state_dict())
        return path

    def training_step(self, models: Models, optimizers: Optimizers, batch: Batch, step: int, stage: Stage) -> Losses:
        cfg: Cs2FusionConfig = self.cfg
        ir, vis, occluded = (batch[k] * 255.0 for k in ("ir", "vis", "vis_occluded"))
        views = forward_views(
            models["backbone"], models["cpn"], ir=ir, vis=vis, vis_occluded=occluded,
            need_occluded_embedding=cfg.loss.augmented_positive == "paper",
        )
        weights = views.compensation.detach() if cfg.loss.backbone_weights == "cpn" else compensation_prior_target(
            ir=ir, vis=vis, gamma=cfg.loss.prior_gamma, shape=cfg.loss.prior_shape, softness=cfg.loss.prior_softness)
        fusion = backbone_loss(views.fused, ir=ir, vis=vis, compensation=weights,
                               ssim_window=cfg.loss.ssim_window, ssim_max_val=cfg.loss.ssim_max_val)
        optimizers["backbone"].zero_grad(set_to_none=True)
        fusion.total.backward()
        optimizers["backbone"].step()
        contrast = cpn_contrastive_loss(
            sso_ir=views.sso_ir, sso_vis=views.sso_vis, embedding_ir=views.embedding_ir, embedding_vis=views.embedding_vis,
            sso_vis_occluded=views.sso_vis_occluded, embedding_ir_occluded=views.embedding_ir_occluded,
            k=cfg.loss.k, alpha=cfg.loss.alpha, augmented_positive=cfg.loss.augmented_positive,
        )
        cpn_loss, prior = contrast.total, None
        if step < cfg.loss.prior_steps or cfg.loss.prior_weight > 0:
            prior = compensation_prior_loss(views.compensation, ir=ir, vis=vis, gamma=cfg.loss.prior_gamma,
                                            shape=cfg.loss.prior_shape, softness=cfg.loss.prior_softness)
            cpn_loss = prior if step < cfg.loss.prior_steps else cpn_loss + cfg.loss.prior_weight * prior
        optimizers["cpn"].zero_grad(set_to_none=True)
        cpn_loss.backward()
        optimizers["cpn"].step()
        losses = {
            "fusion": fusion.total.detach(),
            "intensity": fusion.intensity.detach(),
            "ssim": fusion.structure.detach(),
            "contrast": contrast.total.detach(),
            "contrast_pairing": contrast.pairing.detach(),
            "contrast_augmented": contrast.augmented.detach(),
            # collapse watch: P saturating, or the output turning into a copy of one source
            "p_mean": views.compensation.detach().mean(),
            "gap_vis": (views.fused.detach() - vis).abs().mean(),
            "gap_ir": (views.fused.detach() - ir).abs().mean(),
        }
        if prior is not None:
            losses["prior"] = prior.detach()
        return losses

    def export_model(self, models: dict[str, nn.Module], cfg: Cs2FusionConfig) -> tuple[nn.Module, str]:
        model = create_model("cs2fusion", weights=None)
        model.backbone.load_state_dict(unwrap(models["backbone"]).state_dict())
        return model.eval(), "cs2fusion"
