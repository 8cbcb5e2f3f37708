"""The CS2Fusion authors' training-step structure, kept as an executable specification.

Used by tests (our recipe's step must give the same update) and by benchmarks/training.py
(our step must be faster). Two full backbone passes with autograd, the CPN on both, P
undetached in L_f (its CPN gradients are computed and then zeroed), backward with
``retain_graph``.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.optim import Optimizer

from contrafuse.losses.cs2fusion import backbone_loss, sim_max_loss, sim_min_loss
from contrafuse.models.cs2fusion import sso_features
from contrafuse.training.cs2fusion import Cs2FusionConfig


def authors_training_step(
    backbone: nn.Module, cpn: nn.Module, optimizers: dict[str, Optimizer], batch: dict[str, Any], cfg: Cs2FusionConfig
) -> dict[str, float]:
    """One step as the authors' train.py structures it; returns the two losses."""
    ir, vis, occluded = (batch[k] * 255.0 for k in ("ir", "vis", "vis_occluded"))

    def run(visible: Tensor) -> tuple[Any, Any, Tensor, Tensor]:
        out = backbone(ir=ir, vis=visible)
        features = out.features.detach()
        (comp,) = cpn(features_vis=features[:, :64], features_ir=features[:, 64:])
        levels_vis = [e.detach() for e in out.levels_vis]
        levels_ir = [e.detach() for e in out.levels_ir]
        return out, comp, sso_features(levels_ir), sso_features(levels_vis)

    out, main, sso_ir, sso_vis = run(vis)
    _, augmented, aug_sso_ir, aug_sso_vis = run(occluded)
    fusion = backbone_loss(out.fused, ir=ir, vis=vis, compensation=main.map,
                           ssim_window=cfg.loss.ssim_window, ssim_max_val=cfg.loss.ssim_max_val)
    optimizers["backbone"].zero_grad()
    fusion.total.backward(retain_graph=True)
    optimizers["backbone"].step()
    optimizers["cpn"].zero_grad()
    a = cfg.loss.alpha
    pairing = (sim_max_loss(sso_ir, main.embedding_ir, a) + sim_max_loss(sso_vis, main.embedding_vis, a)
               + sim_min_loss(main.embedding_vis, main.embedding_ir))
    if cfg.loss.augmented_positive == "code":
        positive = sim_max_loss(main.embedding_ir, aug_sso_ir, a)
    else:
        positive = sim_max_loss(augmented.embedding_ir, aug_sso_ir, a)
    contrast = pairing + cfg.loss.k * (positive + sim_min_loss(main.embedding_ir, aug_sso_vis))
    contrast.backward()
    optimizers["cpn"].step()
    return {"fusion": float(fusion.total.detach()), "contrast": float(contrast.detach())}
