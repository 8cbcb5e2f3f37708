"""CS2Fusion's two losses, as functions of tensors (see docs/training.md and cs2fusion.md §2, §7).

Backbone loss (stepped on the fusion network only)::

    L_f = ||P * (F - I_ir)||_F + ||(1 - P) * (F - I_vis)||_F + SSIM3(F, I_ir) + SSIM3(F, I_vis)

with Frobenius norms over the whole batch (not averaged, not squared) on the 0-255 scale and
SSIM3 = kornia ``ssim_loss(window_size=3, max_val=1.0)``, i.e. mean(clamp((1 - SSIM) / 2, 0, 1)),
as the authors use it (``max_val=1`` on 0-255 data makes the SSIM constants negligible).

Contrastive loss of the compensation perception network (CPN), CCAM-style on whole-image
feature vectors, all B x B batch pairs::

    L_c1 = SimMax(M_ir, m_ir) + SimMax(M_vis, m_vis) + SimMin(m_vis, m_ir)
    L_c2 = <augmented positive> + SimMin(m_ir, AM_vis)
    L_c  = L_c1 + k * L_c2                                   (k = 2)

M_* are SSO features of the encoder levels, m_* the compensation embeddings P*Z and (1-P)*Z,
AM_vis the SSO features of the occluded visible patch. The augmented positive is
``SimMax(m_ir, AM_ir)`` in the authors' code, where AM_ir == M_ir (the infrared branch sees the
same patch in both passes), so it only repeats L_c1's pairing; by default (``"paper"``) we use
``SimMax(Am_ir, M_ir)``: the infrared compensation embedding of the *occluded* pass must still
match the infrared features, a second, distinct positive as the paper describes.
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from kornia.losses import ssim_loss as kornia_ssim_loss
from torch import Tensor

from ..models.cs2fusion import minmax_normalise

AUGMENTED_POSITIVES = ("paper", "code")
AugmentedPositive = Literal["paper", "code"]

_COS_MIN, _COS_MAX = 5e-4, 0.9995


class BackboneLoss(NamedTuple):
    total: Tensor
    intensity: Tensor  # the two compensation-weighted Frobenius norms
    structure: Tensor  # the two SSIM terms


class CpnContrastiveLoss(NamedTuple):
    total: Tensor
    pairing: Tensor  # L_c1
    augmented: Tensor  # L_c2


def ssim_loss(a: Tensor, b: Tensor, window_size: int = 3, max_val: float = 1.0) -> Tensor:
    """Mean structural dissimilarity of ``(B, C, H, W)`` images: kornia's ``ssim_loss``, as the authors use it."""
    return kornia_ssim_loss(a, b, window_size, max_val=float(max_val))


# -- backbone loss -------------------------------------------------------------------------------

def backbone_loss(
    fused: Tensor,
    *,
    ir: Tensor,
    vis: Tensor,
    compensation: Tensor,
    ssim_window: int = 3,
    ssim_max_val: float = 1.0,
) -> BackboneLoss:
    """L_f for ``(B, 1, H, W)`` tensors on the 0-255 scale; ``compensation`` is P in [0, 1].

    P weights the infrared error, 1 - P the visible error. Pass P detached: the authors zero
    the CPN's gradients from this loss before they are used, so a detached P is equivalent and
    skips that backward pass.
    """
    intensity = torch.linalg.vector_norm(compensation * (fused - ir)) + torch.linalg.vector_norm(
        (1.0 - compensation) * (fused - vis)
    )
    structure = ssim_loss(fused, ir, ssim_window, ssim_max_val) + ssim_loss(fused, vis, ssim_window, ssim_max_val)
    return BackboneLoss(intensity + structure, intensity, structure)


# -- compensation prior --------------------------------------------------------------------------

PRIOR_SHAPES = ("difference", "brighter")


def compensation_prior_target(
    *, ir: Tensor, vis: Tensor, gamma: float = 1.0, shape: str = "difference", softness: float = 10.0
) -> Tensor:
    """The prior P0 for ``(B, 1, H, W)`` inputs on the 0-255 scale: high where the infrared is brighter.

    ``"difference"``: P0 = minmax(I_ir - I_vis)^gamma over the batch. ``gamma`` sets the level:
    the map's mean is about 0.54 at 1 and 0.33 at 2 on RoadScene patches, where the authors'
    trained CPN has a mean of 0.30.

    ``"brighter"``: P0 = sigmoid((I_ir - I_vis) / softness), a smooth choice of the brighter
    source per pixel (``softness`` in grey levels). Under it the backbone loss's optimum is close
    to the pixel-wise maximum; on night scenes, whose visible image is dark almost everywhere,
    ``"difference"`` sends the background to the dark visible image (docs/training.md).
    """
    if shape == "brighter":
        return torch.sigmoid((ir - vis) / softness)
    if shape != "difference":
        raise ValueError(f"prior shape must be one of {PRIOR_SHAPES}, got {shape!r}")
    return minmax_normalise(ir - vis) ** gamma


def compensation_prior_loss(
    compensation: Tensor, *, ir: Tensor, vis: Tensor, gamma: float = 1.0, shape: str = "difference", softness: float = 10.0
) -> Tensor:
    """Mean squared distance of P from :func:`compensation_prior_target` (``(B, 1, H, W)`` each).

    Not part of the authors' method: it keeps the CPN's map from saturating when training
    from scratch (docs/training.md, "Our CS2Fusion weights and the compensation prior").
    """
    target = compensation_prior_target(ir=ir, vis=vis, gamma=gamma, shape=shape, softness=softness)
    return F.mse_loss(compensation, target)


# -- contrastive loss ----------------------------------------------------------------------------

def pairwise_cosine(a: Tensor, b: Tensor) -> Tensor:
    """``(B, B)`` cosine similarities of the rows of ``a`` and ``b`` (``(B, D)``), clamped to [5e-4, 0.9995]."""
    return _clamped_similarity(F.normalize(a, dim=1), F.normalize(b, dim=1))


def _clamped_similarity(unit_a: Tensor, unit_b: Tensor) -> Tensor:
    return torch.clamp(unit_a @ unit_b.T, _COS_MIN, _COS_MAX)


def rank_weights(similarity: Tensor, alpha: float) -> Tensor:
    """CCAM's weights exp(-alpha * (rank - 1)), rank 0 for the most similar pair of each row.

    The ``- 1`` (top pair weighted e^alpha) is CCAM's and the authors' as written. Ties keep
    their column order (stable sort), so the weights are deterministic.
    """
    order = torch.sort(similarity.detach(), dim=1, descending=True, stable=True).indices
    ranks = torch.argsort(order, dim=1, stable=True)
    return torch.exp(-alpha * (ranks.to(similarity.dtype) - 1.0))


def _sim_max(similarity: Tensor, alpha: float) -> Tensor:
    return (rank_weights(similarity, alpha) * -torch.log(similarity)).mean()


def _sim_min(similarity: Tensor) -> Tensor:
    return (-torch.log(1.0 - similarity)).mean()


def sim_max_loss(a: Tensor, b: Tensor, alpha: float = 0.25) -> Tensor:
    """Pull every pair together: mean_ij w_ij * -log cos(a_i, b_j), rank-weighted per row of ``a``."""
    return _sim_max(pairwise_cosine(a.flatten(1), b.flatten(1)), alpha)


def sim_min_loss(a: Tensor, b: Tensor) -> Tensor:
    """Push every pair apart: mean_ij -log(1 - cos(a_i, b_j))."""
    return _sim_min(pairwise_cosine(a.flatten(1), b.flatten(1)))


def cpn_contrastive_loss(
    *,
    sso_ir: Tensor,
    sso_vis: Tensor,
    embedding_ir: Tensor,
    embedding_vis: Tensor,
    sso_vis_occluded: Tensor,
    embedding_ir_occluded: Tensor | None = None,
    k: float = 2.0,
    alpha: float = 0.25,
    augmented_positive: AugmentedPositive = "paper",
) -> CpnContrastiveLoss:
    """L_c = L_c1 + k * L_c2 (module doc). Inputs are ``(B, ...)``, flattened per sample.

    ``sso_*`` are constants (SSO of detached encoder features); the ``embedding_*`` carry the
    CPN's gradients. ``embedding_ir_occluded`` (the CPN's infrared embedding for the pair with
    the occluded visible patch) is needed for ``augmented_positive="paper"`` only. Equal to
    the sum of :func:`sim_max_loss`/:func:`sim_min_loss` terms; every input is normalised once.
    """
    if augmented_positive not in AUGMENTED_POSITIVES:
        raise ValueError(f"augmented_positive must be one of {AUGMENTED_POSITIVES}, got {augmented_positive!r}")
    if augmented_positive == "paper" and embedding_ir_occluded is None:
        raise ValueError("augmented_positive='paper' needs embedding_ir_occluded")
    unit = lambda t: F.normalize(t.flatten(1), dim=1)  # noqa: E731
    m_ir, m_vis, e_ir, e_vis = unit(sso_ir), unit(sso_vis), unit(embedding_ir), unit(embedding_vis)
    pairing = (
        _sim_max(_clamped_similarity(m_ir, e_ir), alpha)
        + _sim_max(_clamped_similarity(m_vis, e_vis), alpha)
        + _sim_min(_clamped_similarity(e_vis, e_ir))
    )
    if augmented_positive == "paper":
        positive = _sim_max(_clamped_similarity(unit(embedding_ir_occluded), m_ir), alpha)
    else:
        positive = _sim_max(_clamped_similarity(e_ir, m_ir), alpha)  # the authors' SimMax(m_ir, AM_x), AM_x == M_x
    augmented = positive + _sim_min(_clamped_similarity(e_ir, unit(sso_vis_occluded)))
    return CpnContrastiveLoss(pairing + k * augmented, pairing, augmented)
