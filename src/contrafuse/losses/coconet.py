"""CoCoNet losses (docs/coconet.md section 2): data-sensitive base loss and the coupled
contrastive constraint.

All images are ``(B, 1, H, W)`` on the [-1, 1] scale the network is trained on; "visible"
is the detail source (MRI for medical pairs) and "infrared" the intensity source
(CT/PET/SPECT). Masks are ``(B, 1, H, W)`` in [0, 1], 1 on the salient (infrared) foreground.

Differences from the official code, on purpose:

* The entropy measure is per sample (the official counter accumulates the histogram over the
  batch, so sample k gets the entropy of samples 0..k), and +1e-4 is added once.
* SSIM is averaged per sample before the per-sample weights apply (the official code weights
  one batch-averaged SSIM).
* The contrastive in-batch negatives come from rolling the batch instead of slicing a batch
  of exactly 30 into three groups of 10: every sample is an anchor, and anchor i takes its
  easy negatives from samples i - s1 and i - s2 (mod B) (``torch.roll``), s1 = max(1, B // 3),
  s2 = max(1, 2B // 3). For B = 30 anchor i < 10 gets the same negatives as in the official
  grouping (samples i + 20 and i + 10), and the other 20 samples are anchors too. Any B
  works; with B < 3 some easy negatives repeat the coupled one.
* Samples whose (fore- or background) mask is empty are left out of that term instead of
  skipping the batch; a term with no sample left is 0 (never 0/0).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..windows import gaussian_taps

GRADIENT_TEMPERATURE = 0.5  # c1, the released setting
ENTROPY_TEMPERATURE = 0.75  # c2, the released setting
SSIM_WEIGHT = 20.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
RATIO_EPS = 1e-12

FeatureExtractor = Callable[[Tensor], Sequence[Tensor]]

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def gradient_measure(x: Tensor) -> Tensor:
    """Per-sample gradient richness g(x) = mean(|S_x * x| + |S_y * x|) + 1e-5.

    ``x`` ``(B, 1, H, W)`` on [-1, 1]; 3x3 Sobel kernels, zero padding 1 -> ``(B,)``.
    """
    kernels = torch.stack([_SOBEL_X, _SOBEL_X.t()]).unsqueeze(1).to(x)
    edges = F.conv2d(x, kernels, padding=1)
    return edges.abs().sum(1).flatten(1).mean(1) + 1e-5


def entropy_measure(x: Tensor) -> Tensor:
    """Per-sample Shannon entropy (bits) of the 256-bin histogram of uint8(127.5 x + 127.5), + 1e-4.

    ``x`` ``(B, 1, H, W)`` on [-1, 1] -> ``(B,)``. The uint8 cast truncates, as numpy's does.
    """
    b = x.shape[0]
    levels = (x.detach().flatten(1) * 127.5 + 127.5).clamp(0, 255).to(torch.int64)
    offsets = torch.arange(b, device=x.device).unsqueeze(1) * 256
    counts = torch.bincount((levels + offsets).flatten(), minlength=256 * b).view(b, 256).to(x.dtype)
    p = counts / counts.sum(1, keepdim=True)
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(1) + 1e-4


def _official_view(x: Tensor) -> Tensor:
    return x


def _pooled_view(factor: int) -> Callable[[Tensor], Tensor]:
    def view(x: Tensor) -> Tensor:
        return F.avg_pool2d(x, factor, ceil_mode=True) if min(x.shape[-2:]) >= factor else x
    return view


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(B, 1, H, W)`` with replicated borders (taps to 3 sigma)."""
    taps = torch.from_numpy(gaussian_taps(2 * int(3 * sigma + 0.5) + 1, sigma)).to(x)
    pad = taps.numel() // 2
    x = F.pad(x, (pad, pad, 0, 0), mode="replicate") if x.shape[-1] > 1 else x.expand(*x.shape[:-1], 1 + 2 * pad)
    x = F.conv2d(x, taps.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, pad, pad), mode="replicate") if x.shape[-2] > 1 else x.expand(*x.shape[:-2], 1 + 2 * pad, x.shape[-1])
    return F.conv2d(x, taps.view(1, 1, -1, 1))


def local_information(x: Tensor, brightness: float = 1.0) -> Tensor:
    """Per-pixel information map ``(B, 1, H, W)`` of ``x`` on [-1, 1]: local edge richness
    (Sobel magnitude of a sigma-1 low-pass, averaged over a sigma-4 neighbourhood, the SSIM
    window's reach) plus ``brightness`` x the local mean on [0, 1]."""
    smooth = gaussian_blur(x, 1.0)
    kernels = torch.stack([_SOBEL_X, _SOBEL_X.t()]).unsqueeze(1).to(x)
    edges = F.conv2d(F.pad(smooth, (1, 1, 1, 1), mode="replicate"), kernels).abs().sum(1, keepdim=True)
    return gaussian_blur(edges, 4.0) + brightness * gaussian_blur(x * 0.5 + 0.5, 4.0)


LOCAL = "local"  # per-pixel maps of local_information (ours)
LOCAL_BRIGHTNESS = 1.0
MEASURES: dict[str, Callable[[Tensor], Tensor]] = {  # per-sample measures on a view of the patch
    "official": _official_view,
    "coarse4": _pooled_view(4),
}


def data_sensitive_weights(s1: Tensor, s2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """(w1, w2) = softmax(s1 / (c (s1 + s2)), s2 / (c (s1 + s2))) per sample.

    Equal to w1 = sigmoid((2a - 1) / c), a = s1 / (s1 + s2); w2 = 1 - w1. ``s1``, ``s2`` ``(B,)``
    non-negative; a pair with s1 + s2 = 0 gets 0.5 / 0.5.
    """
    total = s1 + s2
    share = torch.where(total > 0, s1 / total.clamp_min(1e-30), torch.full_like(s1, 0.5))
    w1 = torch.sigmoid((2.0 * share - 1.0) / temperature)
    return w1, 1.0 - w1


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """The 2-D SSIM window ``(size, size)`` float32 (:func:`contrafuse.windows.gaussian_taps`)."""
    taps = gaussian_taps(size, sigma)
    return torch.from_numpy(np.outer(taps, taps)).float()


def ssim_per_sample(x: Tensor, y: Tensor, window_size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """Mean SSIM of each sample, ``(B, 1, H, W)`` in [0, 1] twice -> ``(B,)`` (see :func:`ssim_map`)."""
    return ssim_map(x, y, window_size, sigma).flatten(1).mean(1)


def ssim_map(x: Tensor, y: Tensor, window_size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """The SSIM map ``(B, 1, H, W)`` of ``(B, 1, H, W)`` images in [0, 1].

    11x11 Gaussian window (sigma 1.5) with zero padding (the statistics near the border see
    zeros, as in ``pytorch_ssim``, which the official code uses), C1 = 0.01^2, C2 = 0.03^2.
    """
    taps = torch.from_numpy(gaussian_taps(window_size, sigma)).to(x)
    pad = window_size // 2
    stacked = torch.cat([x, y, x * x, y * y, x * y], 0)
    # the 2-D window is separable, and so is its zero padding: two 1-D passes give the same statistics
    rows = F.conv2d(stacked, taps.view(1, 1, 1, -1), padding=(0, pad))
    stats = F.conv2d(rows, taps.view(1, 1, -1, 1), padding=(pad, 0)).chunk(5)
    mu_x, mu_y, xx, yy, xy = stats
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


class SourceWeights(NamedTuple):
    """Per-sample weights ``(B,)`` of each source: gradient (SSIM term) and entropy (MSE term)."""

    gradient_ir: Tensor
    gradient_vis: Tensor
    entropy_ir: Tensor
    entropy_vis: Tensor


@torch.no_grad()
def source_weights(
    *, ir: Tensor, vis: Tensor, gradient_temperature: float = GRADIENT_TEMPERATURE,
    entropy_temperature: float = ENTROPY_TEMPERATURE, measure: str = "official", brightness: float = LOCAL_BRIGHTNESS,
) -> SourceWeights:
    """The data-sensitive weights of a batch of source pairs on [-1, 1] (no gradients)."""
    if measure not in (*MEASURES, LOCAL):
        raise ValueError(f"measure must be one of {', '.join((*MEASURES, LOCAL))}, got {measure!r}")
    if measure == LOCAL:
        i_vis, i_ir = local_information(vis, brightness), local_information(ir, brightness)
        g_vis, g_ir = data_sensitive_weights(i_vis, i_ir, gradient_temperature)
        e_vis, e_ir = data_sensitive_weights(i_vis, i_ir, entropy_temperature)
        return SourceWeights(g_ir, g_vis, e_ir, e_vis)
    view = MEASURES[measure]
    ir, vis = view(ir), view(vis)
    g_vis, g_ir = data_sensitive_weights(gradient_measure(vis), gradient_measure(ir), gradient_temperature)
    e_vis, e_ir = data_sensitive_weights(entropy_measure(vis), entropy_measure(ir), entropy_temperature)
    return SourceWeights(g_ir, g_vis, e_ir, e_vis)


class BaseLoss(NamedTuple):
    total: Tensor  # SSIM_WEIGHT * structure + intensity
    structure: Tensor  # gradient-weighted 1 - SSIM
    intensity: Tensor  # entropy-weighted MSE
    weights: SourceWeights  # the data-sensitive weights used


def base_loss(
    fused: Tensor,
    *,
    ir: Tensor,
    vis: Tensor,
    gradient_temperature: float = GRADIENT_TEMPERATURE,
    entropy_temperature: float = ENTROPY_TEMPERATURE,
    measure: str = "official",
    brightness: float = LOCAL_BRIGHTNESS,
) -> BaseLoss:
    """L_base = 20 * mean_n[wg_vis (1 - SSIM(vis, f)) + wg_ir (1 - SSIM(ir, f))]
    + mean_n[we_vis MSE(f, vis) + we_ir MSE(f, ir)].

    All ``(B, 1, H, W)`` on [-1, 1]; the MSE is on that scale, the SSIM on [0, 1].
    """
    w = source_weights(ir=ir, vis=vis, gradient_temperature=gradient_temperature, entropy_temperature=entropy_temperature,
                       measure=measure, brightness=brightness)
    to01 = lambda t: t * 0.5 + 0.5  # noqa: E731
    f01 = to01(fused)
    per_pixel = lambda t: t if t.ndim == 4 else t.view(-1, 1, 1, 1)  # noqa: E731
    structure = (per_pixel(w.gradient_vis) * (1 - ssim_map(to01(vis), f01))
                 + per_pixel(w.gradient_ir) * (1 - ssim_map(to01(ir), f01))).mean()
    intensity = (per_pixel(w.entropy_vis) * (fused - vis).pow(2) + per_pixel(w.entropy_ir) * (fused - ir).pow(2)).mean()
    return BaseLoss(SSIM_WEIGHT * structure + intensity, structure, intensity, w)


def contrastive_ratio(
    features: FeatureExtractor,
    anchor: Tensor,
    positive: Tensor,
    negatives: Sequence[Tensor],
    layer_weights: Sequence[float],
) -> Tensor:
    """sum_i lambda_i * L1(G_i(anchor), G_i(positive)) / sum_k L1(G_i(anchor), G_i(negative_k)).

    L1 is the mean absolute difference over the whole batch and layer; the positive and the
    negatives carry no gradient. Inputs ``(B, 1, H, W)`` (already masked); ``features`` maps
    a batch to a list of ``len(layer_weights)`` feature maps.
    """
    with torch.no_grad():
        targets = features(torch.cat([positive, *negatives]))
    anchor_features = features(anchor)
    b, k = anchor.shape[0], len(negatives)
    loss = anchor.new_zeros(())
    for weight, fa, ft in zip(layer_weights, anchor_features, targets):
        split = ft.split(b)
        near = (fa - split[0]).abs().mean()
        far = sum((fa - split[1 + j]).abs().mean() for j in range(k))
        loss = loss + weight * near / (far + RATIO_EPS)
    return loss


def in_batch_shifts(batch: int) -> tuple[int, int]:
    """Roll offsets giving every anchor two easy negatives from other samples (module doc)."""
    return max(1, batch // 3), max(1, (2 * batch) // 3)


class CoupledContrastiveLoss(NamedTuple):
    total: Tensor  # foreground + background
    foreground: Tensor
    background: Tensor


def coupled_contrastive_loss(
    fused: Tensor,
    *,
    ir: Tensor,
    vis: Tensor,
    mask: Tensor,
    features: FeatureExtractor,
    layer_weights: Sequence[float],
    shifts: tuple[int, int] | None = None,
) -> CoupledContrastiveLoss:
    """The coupled contrastive constraint of CoCoNet.

    Foreground (mask M): pull f*M toward ir*M, away from vis*M (the coupled negative) and from
    the visible images of two other samples, cut with the anchor's M. Background (1 - M): pull
    toward vis, away from ir and two other samples' infrared images. Masked-out pixels are 0,
    mid-grey on [-1, 1], as in the official code. Samples whose mask region is empty are left
    out of that term.

    Args:
        fused, ir, vis: ``(B, 1, H, W)`` on [-1, 1].
        mask: ``(B, 1, H, W)`` in [0, 1].
        features: the fixed feature space G (e.g. :class:`contrafuse.models.vgg.VGGLossFeatures`).
        layer_weights: lambda_i, one per feature map.
        shifts: roll offsets of the in-batch negatives (default :func:`in_batch_shifts`).
    """
    s1, s2 = shifts if shifts is not None else in_batch_shifts(fused.shape[0])
    terms = []
    for region, positive, coupled in ((mask, ir, vis), (1.0 - mask, vis, ir)):
        keep = region.flatten(1).amax(1) > 0
        if not bool(keep.any()):
            terms.append(fused.sum() * 0.0)  # keeps the graph, adds nothing
            continue
        negatives = [coupled, coupled.roll(s1, 0), coupled.roll(s2, 0)]
        r = region[keep]
        terms.append(
            contrastive_ratio(features, fused[keep] * r, positive[keep] * r, [n[keep] * r for n in negatives], layer_weights)
        )
    return CoupledContrastiveLoss(terms[0] + terms[1], terms[0], terms[1])
