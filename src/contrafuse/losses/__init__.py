"""Training losses: functions of tensors, no engine state."""
from .cs2fusion import (
    BackboneLoss,
    ContrastiveLoss,
    backbone_loss,
    cpn_contrastive_loss,
    pairwise_cosine,
    sim_max_loss,
    sim_min_loss,
    ssim_loss,
)

__all__ = [
    "BackboneLoss",
    "ContrastiveLoss",
    "backbone_loss",
    "cpn_contrastive_loss",
    "pairwise_cosine",
    "sim_max_loss",
    "sim_min_loss",
    "ssim_loss",
]
