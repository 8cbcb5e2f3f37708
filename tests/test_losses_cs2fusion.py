"""CS2Fusion losses against hand computations and the two augmented-positive variants."""
from __future__ import annotations

import math

import pytest
import torch

from contrafuse.losses.cs2fusion import (
    backbone_loss, cpn_contrastive_loss, pairwise_cosine, rank_weights, sim_max_loss, sim_min_loss, ssim_loss,
)


def test_backbone_loss_formula():
    torch.manual_seed(1)
    fused, ir, vis = (torch.rand(2, 1, 8, 8) * 255 for _ in range(3))
    p = torch.rand(2, 1, 8, 8)
    loss = backbone_loss(fused, ir=ir, vis=vis, compensation=p)
    l2 = torch.sqrt(((p * (fused - ir)) ** 2).sum()) + torch.sqrt((((1 - p) * (fused - vis)) ** 2).sum())
    assert torch.allclose(loss.intensity, l2)
    assert torch.allclose(loss.structure, ssim_loss(fused, ir) + ssim_loss(fused, vis))
    assert torch.allclose(loss.total, loss.intensity + loss.structure)


def test_sim_max_rank_weights_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    s = pairwise_cosine(a, b)  # row 0: [0.7071, 0.9995 (clamped)], row 1: [0.7071, 5e-4 (clamped)]
    assert torch.allclose(s, torch.tensor([[math.sqrt(0.5), 0.9995], [math.sqrt(0.5), 5e-4]]), atol=1e-6)
    w = rank_weights(s, 0.25)  # best pair of a row has rank 0 -> weight exp(0.25), second exp(0)
    assert torch.allclose(w, torch.tensor([[1.0, math.exp(0.25)], [math.exp(0.25), 1.0]]))
    expected = (w * -torch.log(s)).mean()
    assert torch.allclose(sim_max_loss(a, b), expected)
    assert torch.allclose(sim_min_loss(a, b), (-torch.log(1 - s)).mean())


def contrastive_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t = lambda: torch.rand(3, 4, 5, 5, generator=g)  # noqa: E731
    return {"sso_ir": t(), "sso_vis": t(), "embedding_ir": t().requires_grad_(), "embedding_vis": t().requires_grad_(),
            "sso_vis_occluded": t(), "embedding_ir_occluded": t().requires_grad_()}


def test_contrastive_loss_terms_code_and_paper():
    x = contrastive_inputs()
    pairing = sim_max_loss(x["sso_ir"], x["embedding_ir"]) + sim_max_loss(x["sso_vis"], x["embedding_vis"]) + sim_min_loss(x["embedding_vis"], x["embedding_ir"])
    negative = sim_min_loss(x["embedding_ir"], x["sso_vis_occluded"])
    code = cpn_contrastive_loss(**x, augmented_positive="code")
    assert torch.allclose(code.pairing, pairing)
    assert torch.allclose(code.augmented, sim_max_loss(x["embedding_ir"], x["sso_ir"]) + negative)
    assert torch.allclose(code.total, pairing + 2 * code.augmented)
    paper = cpn_contrastive_loss(**x)
    assert torch.allclose(paper.augmented, sim_max_loss(x["embedding_ir_occluded"], x["sso_ir"]) + negative)
    paper.total.backward()
    assert x["embedding_ir_occluded"].grad is not None and x["embedding_ir_occluded"].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="embedding_ir_occluded"):
        cpn_contrastive_loss(**{**x, "embedding_ir_occluded": None})
