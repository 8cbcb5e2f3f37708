"""CS2Fusion training recipe: backbone + compensation perception network, two Adam optimisers.

One step, in the authors' order: backbone zero_grad, L_f backward, backbone step, CPN
zero_grad, L_c backward, CPN step. What we compute differently from the authors' train.py,
with the same result:

* The occluded ("augmented") pass runs only the visible encoder, without gradients: the
  infrared branch sees the same patch as in the first pass (its levels are reused), the
  decoder output of that pass is never used, and the CPN's inputs are detached anyway.
* P enters L_f detached: the CPN gradients L_f would produce are zeroed before use.
* SSO features (parameter-free, on detached inputs) are computed once each, without autograd.
* In the CPN's embedding conv the half that sees the unchanged branch is shared by both
  pairs (:class:`CompensationHead`), so the occluded pair costs half a CPN conv.

Not in the authors' method: ``loss.prior_steps`` / ``loss.prior_weight`` / ``loss.prior_gamma``
add the compensation prior (:func:`~contrafuse.losses.cs2fusion.compensation_prior_loss`) to the
CPN's loss; off by default, on in the shipped config (docs/training.md).

Branch order: by default the visible patch goes into branch x and the infrared into branch y,
the order of the authors' test script and of our inference wrapper ``Cs2Fusion``, so the
exported weights are used as they were trained. ``branch_order: authors`` trains as train.py
does (infrared into x); loss roles follow the modalities either way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.utils.data import Dataset

from ..data import OcclusionPolicy, PatchPairs, occlude
from ..losses.cs2fusion import AUGMENTED_POSITIVES, backbone_loss, compensation_prior_loss, cpn_contrastive_loss
from ..models.cs2fusion import SLOPE, CompensationPerceptionNet, Cs2Fusion, Cs2FusionBackbone, minmax_normalise, stack_levels
from .config import ConfigError, DataConfig, TrainConfig
from .recipe import Losses, Recipe, Stage, configured_pairs, register_recipe, unwrap
from .schedules import WarmupMultiStep, fraction_milestones

BRANCH_ORDERS = ("inference", "authors")


@dataclass
class Cs2FusionOptim:
    """Adam for each network, MultiStepLR in steps (milestones as fractions of ``train.steps``)."""

    lr_backbone: float = 2e-3
    lr_cpn: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    milestones: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    gamma: float = 0.1
    warmup_steps: int = 0  # linear warm-up of both learning rates


@dataclass
class Cs2FusionLoss:
    k: float = 2.0  # weight of L_c2 (the authors' "lambda")
    alpha: float = 0.25  # SimMax rank-weight decay
    augmented_positive: str = "paper"  # "paper" or "code" (see losses.cs2fusion)
    ssim_window: int = 3
    ssim_max_val: float = 1.0  # the authors' kornia default on 0-255 data
    prior_steps: int = 0  # the CPN's first steps fit P to the prior alone instead of L_c
    prior_weight: float = 0.0  # after them, L_c + prior_weight * that prior
    prior_gamma: float = 1.0  # the prior is minmax(I_ir - I_vis) ** prior_gamma; higher -> lower P


@dataclass
class Cs2FusionConfig(TrainConfig):
    method: str = "cs2fusion"
    data: DataConfig = field(default_factory=lambda: DataConfig(patch_size=128))
    optim: Cs2FusionOptim = field(default_factory=Cs2FusionOptim)
    loss: Cs2FusionLoss = field(default_factory=Cs2FusionLoss)
    occlusion: OcclusionPolicy = field(default_factory=OcclusionPolicy)
    branch_order: str = "inference"  # "inference": x = VIS, y = IR; "authors": x = IR, y = VIS


def check_config(cfg: Cs2FusionConfig) -> None:
    if cfg.loss.augmented_positive not in AUGMENTED_POSITIVES:
        raise ConfigError(f"loss.augmented_positive must be one of {AUGMENTED_POSITIVES}, got {cfg.loss.augmented_positive!r}")
    if cfg.branch_order not in BRANCH_ORDERS:
        raise ConfigError(f"branch_order must be one of {BRANCH_ORDERS}, got {cfg.branch_order!r}")
    if cfg.loss.prior_steps < 0 or cfg.loss.prior_weight < 0:
        raise ConfigError(f"loss.prior_steps and loss.prior_weight must be >= 0, got {cfg.loss.prior_steps}, {cfg.loss.prior_weight}")
    if cfg.loss.prior_gamma <= 0:
        raise ConfigError(f"loss.prior_gamma must be > 0, got {cfg.loss.prior_gamma}")
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


class CompensationHead(nn.Module):
    """The CPN's layers, run for the plain pair and the pair with one branch replaced.

    Holds a :class:`CompensationPerceptionNet` (``.cpn``, whose weights are the authors'
    layout). The 128-channel embedding conv is linear in its two 64-channel halves, so the half
    of the branch that both pairs share is convolved once:
    z' = act(W_x * F_x' + W_y * F_y + b) reuses W_y * F_y from the plain pair. The SSO features
    are not computed here (they need no parameters; see :func:`sso_features`).
    """

    def __init__(self, cpn: CompensationPerceptionNet | None = None) -> None:
        super().__init__()
        self.cpn = cpn if cpn is not None else CompensationPerceptionNet()

    def _half(self, features: Tensor, half: int) -> Tensor:
        channels = features.shape[1]
        weight = self.cpn.embed.weight[:, half * channels : (half + 1) * channels]
        return F.conv2d(features, weight, padding=1)

    def _maps(self, pre_activation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z = F.leaky_relu(pre_activation + self.cpn.embed.bias.view(1, -1, 1, 1), SLOPE)
        p = minmax_normalise(self.cpn.score(z))
        return p, (p * z).flatten(1), ((1.0 - p) * z).flatten(1)

    def forward(
        self, features_x: Tensor, features_y: Tensor, replaced_x: Tensor | None = None, replaced_y: Tensor | None = None
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """(P, flatten(P*Z), flatten((1-P)*Z)) for [F_x, F_y], then for each replacement given.

        Inputs are the 64-channel stacked encoder features (detached), ``(B, 64, H, W)``.
        """
        part_x, part_y = self._half(features_x, 0), self._half(features_y, 1)
        maps = [self._maps(part_x + part_y)]
        if replaced_x is not None:
            maps.append(self._maps(self._half(replaced_x, 0) + part_y))
        if replaced_y is not None:
            maps.append(self._maps(part_x + self._half(replaced_y, 1)))
        return maps


def sso_features(levels: list[Tensor]) -> Tensor:
    """cat[SSO(E1) .. SSO(E4)] (64 ch) of detached encoder levels, without autograd.

    The same arithmetic as :func:`contrafuse.models.cs2fusion.self_correlation_saliency`, in
    the same order (bit-identical), done in place into one output buffer.
    """
    with torch.no_grad():
        b, c, h, w = levels[0].shape
        out = torch.empty(b, c * len(levels), h, w, dtype=levels[0].dtype, device=levels[0].device)
        for index, f in enumerate(levels):
            r = f.reshape(b, c, h * w)
            correlation = torch.bmm(torch.softmax(torch.bmm(r, r.transpose(1, 2)), dim=1), r).view(b, c, h, w)
            saliency = (f - f.mean()).clamp_(min=1e-10)
            low, high = torch.aminmax(saliency)
            saliency.sub_(low).div_(high - low + 1e-10)
            out[:, index * c : (index + 1) * c] = saliency.add_(correlation).add_(f)
        return out


@dataclass
class Cs2FusionViews:
    """The tensors one step needs, with loss roles resolved from the branch order."""

    fused: Tensor
    compensation: Tensor
    sso_ir: Tensor
    sso_vis: Tensor
    embedding_ir: Tensor
    embedding_vis: Tensor
    sso_vis_occluded: Tensor
    embedding_ir_occluded: Tensor | None


def forward_views(
    backbone: nn.Module,
    head: nn.Module,
    ir: Tensor,
    vis: Tensor,
    vis_occluded: Tensor,
    vis_first: bool,
    need_occluded_embedding: bool,
) -> Cs2FusionViews:
    """Both passes of a step on 0-255 ``(B, 1, H, W)`` inputs (module doc: what is skipped and why)."""
    out = backbone(vis, ir) if vis_first else backbone(ir, vis)
    levels_x = [e.detach() for e in out.levels_x]
    levels_y = [e.detach() for e in out.levels_y]
    with torch.no_grad():
        plain = unwrap(backbone)
        levels_occluded = (plain.encoder_x if vis_first else plain.encoder_y)(vis_occluded)
    sso_x, sso_y = sso_features(levels_x), sso_features(levels_y)
    sso_ir, sso_vis = (sso_y, sso_x) if vis_first else (sso_x, sso_y)
    features = out.features.detach()
    features_x, features_y = features[:, : features.shape[1] // 2], features[:, features.shape[1] // 2 :]
    replaced = stack_levels(levels_occluded) if need_occluded_embedding else None
    maps = head(features_x, features_y, replaced if vis_first else None, None if vis_first else replaced)
    p, embedding_ir, embedding_vis = maps[0]
    return Cs2FusionViews(
        out.fused, p, sso_ir, sso_vis, embedding_ir, embedding_vis, sso_features(levels_occluded),
        maps[1][1] if need_occluded_embedding else None,
    )


@register_recipe
class Cs2FusionRecipe(Recipe):
    name = "cs2fusion"
    config_class = Cs2FusionConfig

    def configure(self, cfg: Cs2FusionConfig) -> None:
        check_config(cfg)
        self.cfg = cfg

    def build_models(self, cfg: Cs2FusionConfig) -> dict[str, nn.Module]:
        check_config(cfg)
        return {"backbone": Cs2FusionBackbone(), "cpn": CompensationHead()}

    def build_optimizers(
        self, models: dict[str, nn.Module], cfg: Cs2FusionConfig
    ) -> tuple[dict[str, Optimizer], dict[str, LRScheduler]]:
        o = cfg.optim
        betas = (float(o.betas[0]), float(o.betas[1]))
        optimizers = {
            "backbone": Adam(models["backbone"].parameters(), lr=o.lr_backbone, betas=betas),
            "cpn": Adam(models["cpn"].parameters(), lr=o.lr_cpn, betas=betas),
        }
        milestones = fraction_milestones(o.milestones, cfg.train.steps)
        schedulers = {
            name: LambdaLR(opt, WarmupMultiStep(milestones, o.gamma, o.warmup_steps)) for name, opt in optimizers.items()
        }
        return optimizers, schedulers

    def build_dataset(self, cfg: Cs2FusionConfig, split: str) -> Dataset:
        check_config(cfg)
        pairs = configured_pairs(cfg.data, split)
        return PatchPairs(pairs, cfg.data.patch_size, cfg.data.flips, AddOccludedVisible(cfg.occlusion))

    def training_step(
        self,
        models: dict[str, nn.Module],
        optimizers: dict[str, Optimizer],
        batch: dict[str, Any],
        step: int,
        stage: Stage,
    ) -> Losses:
        cfg: Cs2FusionConfig = self.cfg
        ir, vis, occluded = (batch[k] * 255.0 for k in ("ir", "vis", "vis_occluded"))
        views = forward_views(
            models["backbone"], models["cpn"], ir, vis, occluded,
            vis_first=cfg.branch_order == "inference",
            need_occluded_embedding=cfg.loss.augmented_positive == "paper",
        )
        fusion = backbone_loss(views.fused, ir, vis, views.compensation.detach(), cfg.loss.ssim_window, cfg.loss.ssim_max_val)
        optimizers["backbone"].zero_grad(set_to_none=True)
        fusion.total.backward()
        optimizers["backbone"].step()
        contrast = cpn_contrastive_loss(
            views.sso_ir, views.sso_vis, views.embedding_ir, views.embedding_vis, views.sso_vis_occluded,
            views.embedding_ir_occluded, cfg.loss.k, cfg.loss.alpha, cfg.loss.augmented_positive,
        )
        cpn_loss, prior = contrast.total, None
        if step < cfg.loss.prior_steps or cfg.loss.prior_weight > 0:
            prior = compensation_prior_loss(views.compensation, ir, vis, cfg.loss.prior_gamma)
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
        model = Cs2Fusion()
        model.backbone.load_state_dict(unwrap(models["backbone"]).state_dict())
        return model.eval(), "cs2fusion"


def reference_training_step(
    backbone: nn.Module,
    cpn: nn.Module,
    optimizers: dict[str, Optimizer],
    batch: dict[str, Any],
    cfg: Cs2FusionConfig,
) -> dict[str, float]:
    """The authors' step structure, kept as an executable specification (tests, benchmark).

    Two full backbone passes with autograd, the CPN on both, P undetached in L_f (its CPN
    gradients are computed and then zeroed), backward with ``retain_graph``. Gives the same
    update as :meth:`Cs2FusionRecipe.training_step`, slower.
    """
    ir, vis, occluded = (batch[k] * 255.0 for k in ("ir", "vis", "vis_occluded"))
    vis_first = cfg.branch_order == "inference"
    cpn = cpn.cpn if isinstance(cpn, CompensationHead) else cpn

    def run(visible: Tensor) -> tuple[Any, Any]:
        out = backbone(visible, ir) if vis_first else backbone(ir, visible)
        comp = cpn([e.detach() for e in out.levels_x], [e.detach() for e in out.levels_y], out.features.detach())
        return out, comp

    out, main = run(vis)
    _, augmented = run(occluded)
    roles = (lambda c: (c.sso_y, c.sso_x)) if vis_first else (lambda c: (c.sso_x, c.sso_y))
    sso_ir, sso_vis = roles(main)
    aug_sso_ir, aug_sso_vis = roles(augmented)
    fusion = backbone_loss(out.fused, ir, vis, main.compensation, cfg.loss.ssim_window, cfg.loss.ssim_max_val)
    optimizers["backbone"].zero_grad()
    fusion.total.backward(retain_graph=True)
    optimizers["backbone"].step()
    optimizers["cpn"].zero_grad()
    from ..losses.cs2fusion import sim_max_loss, sim_min_loss

    a = cfg.loss.alpha
    pairing = sim_max_loss(sso_ir, main.embedding_ir, a) + sim_max_loss(sso_vis, main.embedding_vis, a) + sim_min_loss(main.embedding_vis, main.embedding_ir)
    if cfg.loss.augmented_positive == "code":
        positive = sim_max_loss(main.embedding_ir, aug_sso_ir, a)
    else:
        positive = sim_max_loss(augmented.embedding_ir, aug_sso_ir, a)
    contrast = pairing + cfg.loss.k * (positive + sim_min_loss(main.embedding_ir, aug_sso_vis))
    contrast.backward()
    optimizers["cpn"].step()
    return {"fusion": float(fusion.total.detach()), "contrast": float(contrast.detach())}
