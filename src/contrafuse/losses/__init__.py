"""Training losses: functions of tensors, no engine state. One module per method."""
from .coconet import CoupledContrastiveLoss, base_loss, coupled_contrastive_loss, source_weights
from .cs2fusion import (
    BackboneLoss,
    CpnContrastiveLoss,
    backbone_loss,
    compensation_prior_loss,
    cpn_contrastive_loss,
    pairwise_cosine,
    sim_max_loss,
    sim_min_loss,
    ssim_loss,
)

__all__ = [
    "BackboneLoss",
    "CoupledContrastiveLoss",
    "CpnContrastiveLoss",
    "backbone_loss",
    "base_loss",
    "compensation_prior_loss",
    "coupled_contrastive_loss",
    "cpn_contrastive_loss",
    "pairwise_cosine",
    "sim_max_loss",
    "sim_min_loss",
    "source_weights",
    "ssim_loss",
]
