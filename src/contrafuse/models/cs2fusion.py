"""CS2Fusion (Wang et al., Information Fusion 2024), as the released weights define it.

Backbone: two dense encoders (4 convs of 16 channels each, one per source), a 4-conv decoder
and three demand-driven modules (DDM) that inject the detached encoder features, each gated
by one sigmoid scalar per image computed from the decoder's channel max/avg statistics.
Compensation Perception Network (CPN, training only): a conv pair on the concatenated
features giving the compensation map P, and the self-correlation-and-saliency operation (SSO)
on every encoder level. All activations are LeakyReLU(0.01) (the released pickles hold
LeakyReLU, not the ReLU of the authors' source). Inputs are raw 0-255 intensities.

The authors' first encoder branch is the visible one (their test script feeds the visible
luma there); ours are named for their modality, ``encoder_vis`` and ``encoder_ir``, and the
concatenated features are always [visible, infrared].

Borders (ours, not the authors'): every convolution zero-pads, and the trained network answers
the zeros above the image by copying the infrared image's top row into the output (a 1-pixel
line along the top; the authors' published outputs have it too). The registered model
therefore pads its inputs by replicating their edges, :data:`BORDER_PAD` pixels on each side
(one per convolution on the deepest path, so no output pixel sees a zero), and crops the result
(``border="replicate"``, the default). ``border="zeros"`` is the authors' behaviour.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ContrafuseError
from .capabilities import Capabilities, Int8Recipe
from .registry import register_model

SLOPE = 0.01
BORDERS = ("replicate", "zeros")
BORDER_PAD = 8  # 3x3 convolutions from input to output: 4 in an encoder, 4 in the decoder


def activation(x: Tensor) -> Tensor:
    """The network's LeakyReLU(0.01)."""
    return F.leaky_relu(x, SLOPE)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class DenseEncoder(nn.Module):
    """E1 = a(c1(x)), E2 = a(c2(E1)), E3 = a(c3[E2, E1]), E4 = a(c4[E3, E2, E1]); 16 ch each."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_conv(1, 16), _conv(16, 16), _conv(32, 16), _conv(48, 16)])

    def forward(self, x: Tensor) -> list[Tensor]:
        e1 = activation(self.layers[0](x))
        e2 = activation(self.layers[1](e1))
        e3 = activation(self.layers[2](torch.cat([e2, e1], 1)))
        e4 = activation(self.layers[3](torch.cat([e3, e2, e1], 1)))
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
    """DDM: D + g(D) * (phi(F_vis) + phi(F_ir)), phi a shared conv + LeakyReLU on 64-ch features."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.project = _conv(64, out_channels)
        self.gate = ScalarGate(out_channels)

    def projection(self, features_vis: Tensor, features_ir: Tensor) -> Tensor:
        return activation(self.project(features_vis)) + activation(self.project(features_ir))

    def forward(self, decoded: Tensor, features_vis: Tensor, features_ir: Tensor) -> Tensor:
        return decoded + self.gate(decoded) * self.projection(features_vis, features_ir)


@dataclass
class BackboneOutput:
    levels_vis: list[Tensor]  # E1..E4 of the visible input
    levels_ir: list[Tensor]  # E1..E4 of the infrared input
    features: Tensor  # Fc = cat[F_vis, F_ir], 128 ch
    fused: Tensor  # (B, 1, H, W), 0-255 scale, unclamped


class Cs2FusionBackbone(nn.Module):
    """The CS2Fusion fusion network (the authors' ``AutoEncoder``); ``forward(*, ir, vis)`` on 0-255."""

    decoder_channels = (128, 64, 32, 16, 1)

    def __init__(self) -> None:
        super().__init__()
        self.encoder_vis = DenseEncoder()
        self.encoder_ir = DenseEncoder()
        c = self.decoder_channels
        self.decoder = nn.ModuleList([_conv(c[i], c[i + 1]) for i in range(4)])
        self.ddm = nn.ModuleList([DemandDrivenModule(ch) for ch in c[1:4]])

    def forward(self, *, ir: Tensor, vis: Tensor) -> BackboneOutput:
        levels_vis, levels_ir = self.encoder_vis(vis), self.encoder_ir(ir)
        f_vis, f_ir = stack_levels(levels_vis), stack_levels(levels_ir)
        fc = torch.cat([f_vis, f_ir], 1)
        f_vis, f_ir = f_vis.detach(), f_ir.detach()  # the DDMs see the encoders through a stop-gradient
        d = activation(self.decoder[0](fc))
        for stage in range(3):
            d = self.ddm[stage](d, f_vis, f_ir)
            layer = self.decoder[stage + 1]
            d = layer(d) if stage == 2 else activation(layer(d))
        return BackboneOutput(levels_vis, levels_ir, fc, d)


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


def sso_features(levels: list[Tensor]) -> Tensor:
    """cat[SSO(E1) .. SSO(E4)] (64 ch): the CPN's contrastive targets for one encoder."""
    return torch.cat([self_correlation_saliency(e) for e in levels], 1)


@dataclass
class Compensation:
    """The CPN's output for one pair of stacked encoder features."""

    map: Tensor  # P, (B, 1, H, W) in [0, 1]
    embedding_ir: Tensor  # flatten(P * Z)
    embedding_vis: Tensor  # flatten((1 - P) * Z)


class CompensationPerceptionNet(nn.Module):
    """CPN (the authors' ``Fusion_strage``): compensation map P and the contrastive embeddings.

    ``forward(*, features_vis, features_ir, replaced_vis=None)`` takes the two 64-channel
    stacked encoder features ``(B, 64, H, W)`` (detached; the CPN trains on its own loss) and
    returns ``[Compensation]``; with ``replaced_vis`` also the compensation of the pair
    (replaced_vis, ir), the occluded pass of training. The 128-channel embedding conv is applied
    as the sum of its two 64-channel halves, so that pair reuses the infrared half.
    """

    def __init__(self) -> None:
        super().__init__()
        self.embed = _conv(128, 64)
        self.score = _conv(64, 1)

    def _half(self, features: Tensor, half: int) -> Tensor:
        channels = features.shape[1]
        return F.conv2d(features, self.embed.weight[:, half * channels : (half + 1) * channels], padding=1)

    def _compensation(self, pre_activation: Tensor) -> Compensation:
        z = activation(pre_activation + self.embed.bias.view(1, -1, 1, 1))
        p = minmax_normalise(self.score(z))
        return Compensation(p, (p * z).flatten(1), ((1.0 - p) * z).flatten(1))

    def forward(self, *, features_vis: Tensor, features_ir: Tensor, replaced_vis: Tensor | None = None) -> list[Compensation]:
        ir_half = self._half(features_ir, 1)
        pairs = [features_vis] if replaced_vis is None else [features_vis, replaced_vis]
        return [self._compensation(self._half(vis, 0) + ir_half) for vis in pairs]


class Cs2Fusion(nn.Module):
    """Registry interface: ``forward(*, ir, vis)`` on [0, 1] luma (the backbone runs on 0-255).

    ``border``: ``"replicate"`` (default) pads the inputs by :data:`BORDER_PAD` replicated
    pixels and crops the output, so no output row sees the network's zero padding;
    ``"zeros"`` runs the backbone on the image as it is (the authors' outputs, with their
    copied top row).

    :meth:`fuse` gives the same result with bounded memory (:mod:`._banded`), and the same bits
    whatever the intra-op thread count (tested), so the folder pipeline may run it on several
    CPU workers at once (the registry entry declares ``thread_invariant``).
    """

    def __init__(self, border: str = "replicate") -> None:
        super().__init__()
        if border not in BORDERS:
            raise ContrafuseError(f"cs2fusion: border must be one of {', '.join(BORDERS)}, got {border!r}")
        self.border = border
        self.backbone = Cs2FusionBackbone()

    def _padded(self, x: Tensor) -> Tensor:
        """``x`` (B, 1, H, W) on 0-255, with the replicated border when ``border="replicate"``."""
        x = x * 255.0
        return F.pad(x, (BORDER_PAD,) * 4, mode="replicate") if self.border == "replicate" else x

    def _cropped(self, fused: Tensor) -> Tensor:
        """The fused 0-255 luma back on [0, 1], without the padded border."""
        if self.border == "replicate":
            fused = fused[..., BORDER_PAD:-BORDER_PAD, BORDER_PAD:-BORDER_PAD]
        return fused / 255.0

    def forward(self, *, ir: Tensor, vis: Tensor) -> Tensor:
        return self._cropped(self.backbone(ir=self._padded(ir), vis=self._padded(vis)).fused)

    @torch.inference_mode()
    def fuse(self, *, ir: Tensor, vis: Tensor, band_rows: int | None = None, max_cached_pixels: int = 2_000_000) -> Tensor:
        """Memory-bounded inference equal to :meth:`forward` (up to float rounding).

        The image is processed in horizontal bands with a halo; the DDM gates need whole-image
        statistics, which are gathered over the bands first. Images up to
        ``max_cached_pixels`` keep the band results; larger ones recompute the bands once per
        gate (about 3x the arithmetic, memory independent of the image height).
        """
        from ._banded import banded_cs2fusion

        fused = banded_cs2fusion(self.backbone, ir=self._padded(ir), vis=self._padded(vis), rows=band_rows,
                                 max_cached_pixels=max_cached_pixels)
        return self._cropped(fused)


# Prefixes of the authors' pickled modules -> ours.
AUTHORS_BACKBONE_KEYS = {
    **{f"con{i + 1}.0": f"encoder_vis.layers.{i}" for i in range(4)},
    **{f"con{i + 1}_1.0": f"encoder_ir.layers.{i}" for i in range(4)},
    **{f"decon{i + 1}.0": f"decoder.{i}" for i in range(4)},
    **{f"cov{i + 1}.0": f"ddm.{i}.project" for i in range(3)},
    **{f"ca{i + 1}.cov.0": f"ddm.{i}.gate.conv" for i in range(3)},
}
AUTHORS_CPN_KEYS = {"conv.0": "embed", "activation.0": "score"}


def rename_prefixes(state: dict[str, Tensor], prefixes: dict[str, str]) -> dict[str, Tensor]:
    """Rename ``old.leaf`` keys to ``new.leaf`` by the module prefix; other keys are kept."""
    renamed = {}
    for key, value in state.items():
        stem, _, leaf = key.rpartition(".")
        renamed[f"{prefixes.get(stem, stem)}.{leaf}"] = value
    return renamed


def authors_state_to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The authors' ``AutoEncoder`` state dict as the registered ``Cs2Fusion``'s."""
    return {f"backbone.{k}": v for k, v in rename_prefixes(state, AUTHORS_BACKBONE_KEYS).items()}


def authors_cpn_state_to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The authors' ``Fusion_strage`` state dict as :class:`CompensationPerceptionNet`'s."""
    return rename_prefixes(state, AUTHORS_CPN_KEYS)


INT8 = Int8Recipe(
    op_types=None,
    keep_float=("/gate/", "decoder.3/", "/model/Div", "decoder.2/", "ddm.2/"),
    why="the three DDM gates (global channel max/mean, a conv on 1x1 statistics, sigmoid: per-image "
        "scalars, negligible arithmetic), the output conv and scaling, whose 8-bit output would "
        "add a grey level of rounding, and the last decoder stage (decoder.2 and its DDM), whose "
        "8-bit noise reaches the output through one convolution",
    method="Percentile",  # 99.999 %: on tno42 a little closer to fp32 than MinMax, as fast
    leaky_positive_ranges=True,  # the decoder's pre-activation ranges are 2-3x wider than what survives
    # the padded inputs and each encoder's first convolution output (one input channel: cheap in
    # float32) carried most of the remaining error (benchmarks/int8_sensitivity.py, validation pairs)
    float_activations=("/model/Pad_", "layers.0/Conv_output_0"),
)


@register_model(
    "cs2fusion",
    foreign_state_filter=authors_state_to_ours,
    capabilities=Capabilities(thread_invariant=True, int8=INT8, recipe="cs2fusion", onnx_by_default=True),
)
def cs2fusion(*, border: str = "replicate") -> nn.Module:
    return Cs2Fusion(border)
