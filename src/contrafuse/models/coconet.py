"""CoCoNet (Liu et al., IJCV 2024): coupled contrastive learning network with a multi-level
feature ensemble, laid out as the official ``Unet_resize_conv`` (docs/coconet.md section 1).

Three feature streams feed a U-Net decoder:

1. a U-Net encoder on the 2-channel concatenation [vis, ir] (levels c1..c4, 32..256 ch);
2. and 3. a frozen VGG19 trunk (:class:`~contrafuse.models.vgg.VGGTrunk`), shared, applied to
   the visible and to the infrared image (taps at H/2, H/4, H/8).

At H/2, H/4 and H/8 a :class:`FeatureEnsemble` puts the three streams through one shared
:class:`ChannelAttention` block, concatenates them and merges them with a 3x3 conv; the result
is the decoder's skip (or bottleneck) feature. Conv blocks are conv3x3 -> LeakyReLU(0.2) ->
BatchNorm (BN after the activation, as in the official code); upsampling is bilinear x2; the
head is a 1x1 conv and tanh. The official model's unused layers (``se_32``, ``att_deconv9``,
``max_pool4``: 55,425 parameters) are left out.

Scales: :class:`CoCoNetBackbone` works on [-1, 1] with sides a multiple of 8; the visible
(detail) image comes first in every concatenation, as the official callers pass it.
:class:`CoCoNet` is the registry's interface: [0, 1] luma, any size (reflection padding to a
multiple of 8, then cropped back). Its :meth:`CoCoNet.fuse` is the inference path of
:mod:`._coconet_fast` (faster arithmetic, the same result; exact tiles for large images).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .padding import crop, pad_to_multiple
from .capabilities import Capabilities, Int8Recipe
from .registry import register_model
from .vgg import DEFAULT_VGG_SEED, VGGTrunk

SLOPE = 0.2
SIZE_MULTIPLE = 8  # three 2x2 poolings (the official code pads to 16, which three pools do not need)
LEVEL_SCALES = (2, 4, 8)  # the feature-ensemble levels, as downsampling factors
# The network's receptive-field radius is at most 102 px (measured: changing one input pixel
# moves outputs up to 95..102 px away, depending on its position in the pooling grid), so a
# 128 px halo makes tiles exact.
TILE_HALO = 128
OFFICIAL_PARAMETERS = 9_169_605  # official Unet_resize_conv, frozen VGG trunk included
OFFICIAL_DEAD_PARAMETERS = 55_425  # its se_32 (27,745) and att_deconv9 (27,680), never used
OFFICIAL_FROZEN_PARAMETERS = 2_324_416  # the VGG trunk


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


def upsample2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class ConvActNorm(nn.Module):
    """conv3x3 -> LeakyReLU(0.2) -> BatchNorm (``norm=False``: no BN, as after conv9_2)."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool = True) -> None:
        super().__init__()
        self.conv = conv3x3(in_channels, out_channels)
        self.norm = nn.BatchNorm2d(out_channels) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(F.leaky_relu(self.conv(x), SLOPE))


class ChannelAttention(nn.Module):
    """DANet-style channel attention with 3x3 projections (the official ``CAM_Module``).

    For x ``(B, C, H, W)``: Q, K, V = conv3x3(x); E = Q K^T over all H*W pixels ``(B, C, C)``;
    A = softmax(rowmax(E) - E); out = gamma * (A V) + V, gamma a learnt scalar starting at 0
    (so the block starts as the plain conv V). The three projections are stored as one
    conv with 3C outputs (same parameter count, one kernel launch).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.qkv = nn.Conv2d(channels, 3 * channels, 3, padding=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def _project(self, x: Tensor, first: int, last: int) -> Tensor:
        c = self.channels
        return F.conv2d(x, self.qkv.weight[first * c : last * c], self.qkv.bias[first * c : last * c], padding=1)

    def value(self, x: Tensor) -> Tensor:
        return self._project(x, 2, 3)

    def query_key(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q, k = self._project(x, 0, 2).chunk(2, dim=1)
        return q, k

    @staticmethod
    def energy(q: Tensor, k: Tensor) -> Tensor:
        """E = Q K^T summed over pixels: ``(B, C, h, w)`` twice -> ``(B, C, C)``."""
        return torch.bmm(q.flatten(2), k.flatten(2).transpose(1, 2))

    @staticmethod
    def attention_from_energy(energy: Tensor) -> Tensor:
        # rowmax(E) - E is the official form; softmax makes it equal to softmax(-E).
        return torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)

    def mixing(self, attention: Tensor) -> Tensor:
        """gamma * A + I ``(B, C, C)``: out = gamma A V + V = (gamma A + I) V."""
        return self.gamma * attention + torch.eye(self.channels, dtype=attention.dtype, device=attention.device)

    def values_and_attention(self, x: Tensor, attention: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """V ``(B, C, H, W)`` and A ``(B, C, C)``: the image's own, or the ``attention`` given."""
        if attention is None:
            q, k, v = self.qkv(x).chunk(3, dim=1)
            return v, self.attention_from_energy(self.energy(q, k))
        return self.value(x), attention

    def forward(self, x: Tensor, attention: Tensor | None = None) -> Tensor:
        """``(B, C, H, W)`` -> same shape.

        ``attention`` ``(B, C, C)`` replaces the image's own (tiled inference computes it over
        the whole image first).
        """
        v, attention = self.values_and_attention(x, attention)
        b, c, h, w = v.shape
        return torch.bmm(self.mixing(attention), v.flatten(2)).reshape(b, c, h, w)


class FeatureEnsemble(nn.Module):
    """One level of the multi-level feature ensemble ("MAM").

    ``forward(unet, vgg)``: the U-Net feature ``(B, C, h, w)`` and the VGG taps of the visible
    and the infrared image stacked along the batch ``(2B, C, h, w)`` -> ``(B, C, h, w)`` =
    conv3x3(cat[CA(U-Net), CA(VGG(vis)), CA(VGG(ir))]), with one shared CA block.
    ``attention``: optional ``(3B, C, C)`` matrices, ordered [U-Net; vis; ir].
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention = ChannelAttention(channels)
        self.merge = conv3x3(3 * channels, channels)

    def energy(self, unet: Tensor, vgg: Tensor, core: tuple[slice, slice] | None = None) -> Tensor:
        """The streams' channel energies ``(3B, C, C)``, summed over the pixels of ``core`` only."""
        region = (..., *core) if core is not None else (...,)
        energies = []
        for stream in (unet, vgg):
            q, k = self.attention.query_key(stream)
            energies.append(self.attention.energy(q[region], k[region]))
        return torch.cat(energies)

    def forward(self, unet: Tensor, vgg: Tensor, attention: Tensor | None = None) -> Tensor:
        b = unet.shape[0]
        own = (None, None) if attention is None else attention.split([b, 2 * b])
        out_unet, out_vgg = self.attention(unet, own[0]), self.attention(vgg, own[1])
        return self.merge(torch.cat([out_unet, *out_vgg.chunk(2)], dim=1))


class CoCoNetBackbone(nn.Module):
    """The CoCoNet network on [-1, 1].

    ``forward(*, ir, vis)``: ``(B, 1, H, W)`` in [-1, 1] with H, W multiples of 8 -> fused
    ``(B, 1, H, W)`` in [-1, 1] (tanh). The encoder input is cat[vis, ir], the channel order
    of the official callers (which pass the visible image first).
    """

    def __init__(self, vgg_weights: str | os.PathLike | None = None, vgg_seed: int = DEFAULT_VGG_SEED) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(ConvActNorm(2, 32), ConvActNorm(32, 32))
        self.enc2 = nn.Sequential(ConvActNorm(32, 64), ConvActNorm(64, 64))
        self.enc3 = nn.Sequential(ConvActNorm(64, 128), ConvActNorm(128, 128))
        self.enc4 = ConvActNorm(128, 256)
        self.vgg = VGGTrunk(vgg_weights, vgg_seed)
        self.ensembles = nn.ModuleList([FeatureEnsemble(64), FeatureEnsemble(128), FeatureEnsemble(256)])
        self.bottleneck = ConvActNorm(256, 256)  # official conv4_2
        self.up3 = conv3x3(256, 128)  # official deconv6 .. deconv8: plain convs after the upsampling
        self.dec3 = nn.Sequential(ConvActNorm(256, 128), ConvActNorm(128, 128))
        self.up2 = conv3x3(128, 64)
        self.dec2 = nn.Sequential(ConvActNorm(128, 64), ConvActNorm(64, 64))
        self.up1 = conv3x3(64, 32)
        self.dec1 = nn.Sequential(ConvActNorm(64, 32), ConvActNorm(32, 32, norm=False))
        self.head = nn.Conv2d(32, 1, 1)

    def encode(self, *, ir: Tensor, vis: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """c1 ``(B, 32, H, W)`` and, for s = 2, 4, 8, the ensemble inputs: the U-Net feature
        ``(B, C, H/s, W/s)`` and the VGG taps of vis and ir ``(2B, C, H/s, W/s)``."""
        c1 = self.enc1(torch.cat([vis, ir], dim=1))
        c2 = self.enc2(F.max_pool2d(c1, 2))
        c3 = self.enc3(F.max_pool2d(c2, 2))
        c4 = self.enc4(F.max_pool2d(c3, 2))
        taps = self.vgg(torch.cat([vis, ir], dim=0))  # both images in one batch through the shared trunk
        return c1, list(zip((c2, c3, c4), taps))

    def decode(self, c1: Tensor, streams: list[tuple[Tensor, Tensor]], attention: list[Tensor] | None = None) -> Tensor:
        attention = attention or [None] * len(streams)
        m2, m3, m4 = (ensemble(*s, att) for ensemble, s, att in zip(self.ensembles, streams, attention))
        d = self.bottleneck(m4)
        d = self.dec3(torch.cat([self.up3(upsample2(d)), m3], dim=1))
        d = self.dec2(torch.cat([self.up2(upsample2(d)), m2], dim=1))
        d = self.dec1(torch.cat([self.up1(upsample2(d)), c1], dim=1))
        return torch.tanh(self.head(d))

    def forward(self, *, ir: Tensor, vis: Tensor, attention: list[Tensor] | None = None) -> Tensor:
        """``attention``: optional per-level ``(3B, C, C)`` matrices (tiled inference)."""
        c1, streams = self.encode(ir=ir, vis=vis)
        return self.decode(c1, streams, attention)


def to_network_input(*, ir: Tensor, vis: Tensor) -> tuple[Tensor, Tensor, tuple[int, int, int, int]]:
    """[0, 1] luma -> [-1, 1], reflection-padded to a multiple of 8; and the box to crop back."""
    (ir, box), (vis, _) = pad_to_multiple(ir * 2 - 1, SIZE_MULTIPLE), pad_to_multiple(vis * 2 - 1, SIZE_MULTIPLE)
    return ir, vis, box


def from_network_output(fused: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """The network's [-1, 1] output cropped to ``box`` and mapped back to [0, 1]."""
    return (crop(fused, box) + 1) / 2


class CoCoNet(nn.Module):
    """Registry interface: ``forward(*, ir, vis)`` on ``(B, 1, H, W)`` luma in [0, 1], any H x W.

    Maps to [-1, 1], reflection-pads to a multiple of 8, runs :class:`CoCoNetBackbone`, crops,
    maps back to [0, 1]. Weights are kept channels_last (faster convolutions on CPU). Use eval
    mode for inference (BatchNorm with running statistics). :meth:`fuse` is the inference path
    of :mod:`._coconet_fast`: the same result, faster, and tiled for large images.
    """

    max_width = 2200
    max_pixels = 2200 * 1800

    def __init__(self, vgg_weights: str | os.PathLike | None = None, vgg_seed: int = DEFAULT_VGG_SEED) -> None:
        super().__init__()
        self.backbone = CoCoNetBackbone(vgg_weights, vgg_seed)
        self.to(memory_format=torch.channels_last)

    def forward(self, *, ir: Tensor, vis: Tensor) -> Tensor:
        ir, vis, box = to_network_input(ir=ir, vis=vis)
        return from_network_output(self.backbone(ir=ir, vis=vis), box)

    @torch.inference_mode()
    def fuse(self, *, ir: Tensor, vis: Tensor, tile: int = 512, halo: int = TILE_HALO) -> Tensor:
        """Like :meth:`forward` (up to float rounding), faster; tiled (exact) for large images."""
        from ._coconet_fast import fast_fuse

        return fast_fuse(self, ir=ir, vis=vis, tile=tile, halo=halo)


class PaddedInputCoCoNet(nn.Module):
    """``forward(*, ir, vis)`` on [0, 1] inputs whose H and W are multiples of 8 (no padding)."""

    def __init__(self, backbone: CoCoNetBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, *, ir: Tensor, vis: Tensor) -> Tensor:
        return (self.backbone(ir=ir * 2 - 1, vis=vis * 2 - 1) + 1) / 2


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total, trainable and frozen parameter counts of ``model``."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


def onnx_core(model: CoCoNet) -> nn.Module:
    """What ONNX export traces: the padding depends on the image size through Python integers,
    which tracing would freeze, so the exported graph takes inputs already padded to
    :data:`SIZE_MULTIPLE` (``contrafuse.export.OnnxModel`` pads and crops around it)."""
    return PaddedInputCoCoNet(model.backbone)


INT8 = Int8Recipe(
    op_types=("Conv",),
    keep_float=("/head/",),
    why="only the convolutions are quantised (the 1x1 head excepted): the channel attention (Q K^T "
        "summed over all pixels, softmax, the A V products), BatchNorm, resizes, poolings and tanh "
        "stay float32; quantising them as well doubles the error for 14 % more speed",
)
CAPABILITIES = Capabilities(size_multiple=SIZE_MULTIPLE, onnx_core=onnx_core, int8=INT8, recipe="coconet",
                            onnx_by_default=True)


@register_model("coconet", capabilities=CAPABILITIES)
def coconet(*, vgg_weights: str | os.PathLike | None = None, vgg_seed: int = DEFAULT_VGG_SEED) -> nn.Module:
    return CoCoNet(vgg_weights, vgg_seed)


@register_model("coconet-medical", capabilities=CAPABILITIES)
def coconet_medical(*, vgg_weights: str | os.PathLike | None = None, vgg_seed: int = DEFAULT_VGG_SEED) -> nn.Module:
    return CoCoNet(vgg_weights, vgg_seed)
