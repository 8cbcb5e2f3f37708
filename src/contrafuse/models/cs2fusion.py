"""CS2Fusion (Wang et al., Information Fusion 2024), as the released weights define it.

Backbone: two dense encoders (4 convs of 16 channels each, one per source), a 4-conv decoder
and three demand-driven modules (DDM) that inject the detached encoder features, each gated
by one sigmoid scalar per image computed from the decoder's channel max/avg statistics.
Compensation Perception Network (CPN, training only): a conv pair on the concatenated
features giving the compensation map P, plus the self-correlation-and-saliency operation
(SSO) on every encoder level. All activations are LeakyReLU(0.01) (the released pickles hold
LeakyReLU, not the ReLU of the authors' source). Inputs are raw 0-255 intensities.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import register_model

SLOPE = 0.01


def _act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, SLOPE)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class DenseEncoder(nn.Module):
    """E1 = a(c1(x)), E2 = a(c2(E1)), E3 = a(c3[E2, E1]), E4 = a(c4[E3, E2, E1]); 16 ch each."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_conv(1, 16), _conv(16, 16), _conv(32, 16), _conv(48, 16)])

    def forward(self, x: Tensor) -> list[Tensor]:
        e1 = _act(self.layers[0](x))
        e2 = _act(self.layers[1](e1))
        e3 = _act(self.layers[2](torch.cat([e2, e1], 1)))
        e4 = _act(self.layers[3](torch.cat([e3, e2, e1], 1)))
        return [e1, e2, e3, e4]


def stack_levels(levels: list[Tensor]) -> Tensor:
    """[E1, E2, E3, E4] -> cat[E4, E3, E2, E1] (64 ch), the order the decoder expects."""
    return torch.cat(levels[::-1], 1)


class ScalarGate(nn.Module):
    """sigmoid(conv3x3([max-pool; avg-pool])) on a 1x1 map: one scalar per image.

    On a 1x1 input only the kernel's centre tap contributes, so this is a linear layer on the
    channel statistics; the 3x3 kernel is kept so that the authors' weights load unchanged.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv(2 * channels, 1)

    def forward(self, decoded: Tensor) -> Tensor:
        stats = torch.cat([decoded.amax(dim=(2, 3), keepdim=True), decoded.mean(dim=(2, 3), keepdim=True)], 1)
        return self.from_statistics(stats)

    def from_statistics(self, stats: Tensor) -> Tensor:
        """Gate from precomputed ``(B, 2C, 1, 1)`` [max; mean] statistics."""
        return torch.sigmoid(self.conv(stats))


class DemandDrivenModule(nn.Module):
    """DDM: D + g(D) * (phi(F_a) + phi(F_b)), phi a shared conv + LeakyReLU on 64-ch features."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.project = _conv(64, out_channels)
        self.gate = ScalarGate(out_channels)

    def projection(self, features_a: Tensor, features_b: Tensor) -> Tensor:
        return _act(self.project(features_a)) + _act(self.project(features_b))

    def forward(self, decoded: Tensor, features_a: Tensor, features_b: Tensor) -> Tensor:
        return decoded + self.gate(decoded) * self.projection(features_a, features_b)


@dataclass
class BackboneOutput:
    levels_x: list[Tensor]  # E1..E4 of the first input
    levels_y: list[Tensor]  # E1..E4 of the second input
    features: Tensor  # Fc = cat[FA, FB], 128 ch
    fused: Tensor  # (B, 1, H, W), 0-255 scale, unclamped


class Cs2FusionBackbone(nn.Module):
    """The CS2Fusion fusion network (the authors' ``AutoEncoder``); inputs 0-255."""

    decoder_channels = (128, 64, 32, 16, 1)

    def __init__(self) -> None:
        super().__init__()
        self.encoder_x = DenseEncoder()
        self.encoder_y = DenseEncoder()
        c = self.decoder_channels
        self.decoder = nn.ModuleList([_conv(c[i], c[i + 1]) for i in range(4)])
        self.ddm = nn.ModuleList([DemandDrivenModule(ch) for ch in c[1:4]])

    def forward(self, x: Tensor, y: Tensor) -> BackboneOutput:
        levels_x, levels_y = self.encoder_x(x), self.encoder_y(y)
        fa, fb = stack_levels(levels_x), stack_levels(levels_y)
        fc = torch.cat([fa, fb], 1)
        fa, fb = fa.detach(), fb.detach()  # the DDMs see the encoders through a stop-gradient
        d = _act(self.decoder[0](fc))
        for stage in range(3):
            d = self.ddm[stage](d, fa, fb)
            layer = self.decoder[stage + 1]
            d = layer(d) if stage == 2 else _act(layer(d))
        return BackboneOutput(levels_x, levels_y, fc, d)


def minmax_normalise(x: Tensor, eps: float = 1e-10) -> Tensor:
    """(x - min) / (max - min + eps) with min/max over the whole batch tensor, as the authors do."""
    low, high = x.min(), x.max()
    return (x - low) / (high - low + eps)


def self_correlation_saliency(f: Tensor) -> Tensor:
    """SSO(f) = saliency(f) + self-correlation(f) + f for ``(B, C, H, W)`` features.

    self-correlation: softmax over dim 1 of the channel Gram matrix R R^T, applied to R;
    saliency: min-max normalised max(f - mean(f), 1e-10), statistics over the whole batch.
    """
    b, c, h, w = f.shape
    r = f.reshape(b, c, h * w)
    attention = torch.softmax(torch.bmm(r, r.transpose(1, 2)), dim=1)
    correlation = torch.bmm(attention, r).reshape(b, c, h, w)
    saliency = minmax_normalise(torch.clamp(f - f.mean(), min=1e-10))
    return saliency + correlation + f


@dataclass
class CompensationOutput:
    sso_x: Tensor  # cat[SSO(E1x) .. SSO(E4x)], 64 ch
    sso_y: Tensor
    embedding_ir: Tensor  # flatten(P * Z)
    embedding_vis: Tensor  # flatten((1 - P) * Z)
    compensation: Tensor  # P, (B, 1, H, W) in [0, 1]


class CompensationPerceptionNet(nn.Module):
    """CPN (the authors' ``Fusion_strage``): compensation map P and the contrastive embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = _conv(128, 64)
        self.score = _conv(64, 1)

    def forward(self, levels_x: list[Tensor], levels_y: list[Tensor], features: Tensor) -> CompensationOutput:
        z = _act(self.embed(features))
        p = minmax_normalise(self.score(z))
        sso_x = torch.cat([self_correlation_saliency(e) for e in levels_x], 1)
        sso_y = torch.cat([self_correlation_saliency(e) for e in levels_y], 1)
        return CompensationOutput(sso_x, sso_y, (p * z).flatten(1), ((1 - p) * z).flatten(1), p)


class Cs2Fusion(nn.Module):
    """Inference wrapper: ``forward(ir, vis)`` on [0, 1] luma, as the registry expects.

    Follows the authors' test script: visible luma into the first branch, infrared into the
    second, both scaled to 0-255. :meth:`fuse` gives the same result with bounded memory.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Cs2FusionBackbone()

    def forward(self, ir: Tensor, vis: Tensor) -> Tensor:
        return self.backbone(vis * 255.0, ir * 255.0).fused / 255.0

    @torch.inference_mode()
    def fuse(self, ir: Tensor, vis: Tensor, band_rows: int | None = None, max_cached_pixels: int = 2_000_000) -> Tensor:
        """Memory-bounded inference equal to :meth:`forward` (up to float rounding).

        The image is processed in horizontal bands with a halo; the DDM gates need whole-image
        statistics, which are gathered over the bands first. Images up to
        ``max_cached_pixels`` keep the band results (176 channels); larger ones recompute the
        bands once per gate (about 3x the arithmetic, memory independent of the image height).
        ``band_rows`` defaults to about 40k pixels per band when caching, 256k when recomputing.
        """
        from ._banded import banded_cs2fusion

        return banded_cs2fusion(self.backbone, vis * 255.0, ir * 255.0, band_rows, max_cached_pixels) / 255.0


# Keys of the authors' pickled modules -> ours.
_BACKBONE_KEYS = {
    **{f"con{i + 1}.0": f"encoder_x.layers.{i}" for i in range(4)},
    **{f"con{i + 1}_1.0": f"encoder_y.layers.{i}" for i in range(4)},
    **{f"decon{i + 1}.0": f"decoder.{i}" for i in range(4)},
    **{f"cov{i + 1}.0": f"ddm.{i}.project" for i in range(3)},
    **{f"ca{i + 1}.cov.0": f"ddm.{i}.gate.conv" for i in range(3)},
}
_CPN_KEYS = {"conv.0": "embed", "activation.0": "score"}


def reference_key_map(module: nn.Module) -> dict[str, str] | None:
    """Map the authors' state-dict prefixes onto ``module``'s, or None if unknown."""
    if isinstance(module, Cs2Fusion):
        return {k: f"backbone.{v}" for k, v in _BACKBONE_KEYS.items()}
    if isinstance(module, Cs2FusionBackbone):
        return dict(_BACKBONE_KEYS)
    if isinstance(module, CompensationPerceptionNet):
        return dict(_CPN_KEYS)
    return None


@register_model(
    "cs2fusion",
    description="CS2Fusion backbone (Wang et al. 2024), our weights trained on the RoadScene training split",
    default_weights="cs2fusion.safetensors",
)
def cs2fusion() -> nn.Module:
    return Cs2Fusion()
