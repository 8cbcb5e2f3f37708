"""CoCoNet (Liu et al., IJCV 2024): coupled contrastive learning network with a multi-level
feature ensemble, laid out as the official ``Unet_resize_conv`` (docs/coconet.md section 1).

Three feature streams feed a U-Net decoder:

1. a U-Net encoder on the 2-channel concatenation [A, B] (levels c1..c4, 32..256 ch);
2. and 3. a frozen VGG19 trunk (:class:`~contrafuse.models.vgg.VGGTrunk`), shared, applied to
   A and to B (taps at H/2, H/4, H/8).

At H/2, H/4 and H/8 a :class:`FeatureEnsemble` puts the three streams through one shared
:class:`ChannelAttention` block, concatenates them and merges them with a 3x3 conv; the result
is the decoder's skip (or bottleneck) feature. Conv blocks are conv3x3 -> LeakyReLU(0.2) ->
BatchNorm (BN after the activation, as in the official code); upsampling is bilinear x2; the
head is a 1x1 conv and tanh. The official model's unused layers (``se_32``, ``att_deconv9``,
``max_pool4``: 55,425 parameters) are left out.

Scales: :class:`CoCoNetBackbone` works on [-1, 1] with sides a multiple of 8. A is the
visible (detail) image and B the infrared (intensity) one, the order every official caller
uses. :class:`CoCoNet` is the registry's interface: [0, 1] luma, any size (reflection padding
to a multiple of 8, then cropped back), and a memory-bounded, exact :meth:`CoCoNet.fuse` for
large images (tiles with a halo; the whole-image channel-attention statistics are accumulated
over the tiles first).
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
        y = self.conv(x)
        if y.requires_grad or (self.training and isinstance(self.norm, nn.BatchNorm2d)):
            return self.norm(F.leaky_relu(y, SLOPE))
        # Inference: in place. A fresh full-resolution tensor costs more than the arithmetic
        # on it (page faults), and eval BN is just a per-channel affine map.
        F.leaky_relu_(y, SLOPE)
        if isinstance(self.norm, nn.BatchNorm2d):
            scale = self.norm.weight * torch.rsqrt(self.norm.running_var + self.norm.eps)
            shift = self.norm.bias - self.norm.running_mean * scale
            y.mul_(scale.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1))
        return y


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

    def forward(self, x: Tensor, attention: Tensor | None = None) -> Tensor:
        """``(B, C, H, W)`` -> same shape; ``attention`` ``(B, C, C)`` overrides the image's own."""
        b, c, h, w = x.shape
        if attention is None:
            q, k, v = self.qkv(x).chunk(3, dim=1)
            attention = self.attention_from_energy(self.energy(q, k))
        else:
            v = self.value(x)
        # gamma * A V + V = (gamma * A + I) V: one matmul, no extra feature-map pass.
        mix = self.gamma * attention + torch.eye(c, dtype=x.dtype, device=x.device)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # pixels-major layout: compute (mix V)^T = V^T mix^T, which is channels_last already
            out = torch.bmm(v.flatten(2).transpose(1, 2), mix.transpose(1, 2)).transpose(1, 2)
        else:
            out = torch.bmm(mix, v.flatten(2))
        return out.reshape(b, c, h, w)


class FeatureEnsemble(nn.Module):
    """One level of the multi-level feature ensemble ("MAM").

    ``forward(unet, vgg)``: the U-Net feature ``(B, C, h, w)`` and the VGG taps of A and B
    stacked along the batch ``(2B, C, h, w)`` -> ``(B, C, h, w)`` =
    conv3x3(cat[CA(U-Net), CA(VGG(A)), CA(VGG(B))]), with one shared CA block.
    ``attention``: optional ``(3B, C, C)`` matrices, ordered [U-Net; A; B].
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
        if b == 1 and not torch.jit.is_tracing():  # the folded path's data-dependent kernel does not export
            return self._forward_single(unet, vgg, attention)
        own = (None, None) if attention is None else attention.split([b, 2 * b])
        out_unet, out_vgg = self.attention(unet, own[0]), self.attention(vgg, own[1])
        return self.merge(torch.cat([out_unet, *out_vgg.chunk(2)], dim=1))

    def _forward_single(self, unet: Tensor, vgg: Tensor, attention: Tensor | None) -> Tensor:
        """One image: the attention's channel mixing (gamma A + I) folded into the merge conv.

        merge(cat_s[M_s V_s]) = conv(cat_s[W_s M_s], cat_s[V_s]), W_s the merge weights of
        stream s: the same result without the attention matmuls and their output tensors.
        """
        ca, c = self.attention, self.attention.channels
        if attention is None:
            values, energies = [], []
            for stream in (unet, vgg):
                q, k, v = ca.qkv(stream).chunk(3, dim=1)
                values.append(v)
                energies.append(ca.energy(q, k))
            attention = ca.attention_from_energy(torch.cat(energies))
        else:
            values = [ca.value(unet), ca.value(vgg)]
        mix = ca.gamma * attention + torch.eye(c, dtype=unet.dtype, device=unet.device)
        weight = torch.einsum("osjyx,sji->osiyx", self.merge.weight.unflatten(1, (3, c)), mix).flatten(1, 2)
        if unet.is_contiguous(memory_format=torch.channels_last):
            weight = weight.contiguous(memory_format=torch.channels_last)
        merged_input = torch.cat([values[0], *values[1].chunk(2)], dim=1)
        return F.conv2d(merged_input, weight, self.merge.bias, padding=1)


class CoCoNetBackbone(nn.Module):
    """The CoCoNet network on [-1, 1].

    ``forward(a, b)``: A (visible / MRI) and B (infrared / functional), ``(B, 1, H, W)`` in
    [-1, 1] with H, W multiples of 8 -> fused ``(B, 1, H, W)`` in [-1, 1] (tanh).
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

    def encode(self, a: Tensor, b: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """c1 ``(B, 32, H, W)`` and, for s = 2, 4, 8, the ensemble inputs: the U-Net feature
        ``(B, C, H/s, W/s)`` and the VGG taps of A and B ``(2B, C, H/s, W/s)``."""
        x = torch.cat([a, b], dim=1)
        c1 = self.enc1(x)
        c2 = self.enc2(F.max_pool2d(c1, 2))
        c3 = self.enc3(F.max_pool2d(c2, 2))
        c4 = self.enc4(F.max_pool2d(c3, 2))
        taps = self.vgg(torch.cat([a, b], dim=0))  # A and B in one batch through the shared trunk
        return c1, list(zip((c2, c3, c4), taps))

    def decode(self, c1: Tensor, streams: list[tuple[Tensor, Tensor]], attention: list[Tensor] | None = None) -> Tensor:
        attention = attention or [None] * len(streams)
        m2, m3, m4 = (ensemble(*s, att) for ensemble, s, att in zip(self.ensembles, streams, attention))
        d = self.bottleneck(m4)
        d = self.dec3(torch.cat([self.up3(upsample2(d)), m3], dim=1))
        d = self.dec2(torch.cat([self.up2(upsample2(d)), m2], dim=1))
        d = self.dec1(torch.cat([self.up1(upsample2(d)), c1], dim=1))
        return torch.tanh(self.head(d))

    def forward(self, a: Tensor, b: Tensor, attention: list[Tensor] | None = None) -> Tensor:
        """``attention``: optional per-level ``(3B, C, C)`` matrices (see :func:`tiled_forward`)."""
        c1, streams = self.encode(a, b)
        return self.decode(c1, streams, attention)


def reflect_indices(size: int, before: int, after: int, device: torch.device | None = None) -> Tensor:
    """Indices padding a side of ``size`` by reflection, ``before``/``after`` of any length.

    Equal to ``F.pad(..., mode="reflect")`` when both pads are below ``size``; longer pads keep
    reflecting (the same as reflecting in steps); a side of 1 is replicated.
    """
    index = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def pad_to_multiple(x: Tensor, multiple: int = SIZE_MULTIPLE) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Reflection-pad ``(..., H, W)`` to multiples of ``multiple``, split evenly between sides.

    Returns the padded tensor and ``(top, left, H, W)`` for :func:`crop`.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    top, left = pad_h // 2, pad_w // 2
    if pad_h:
        x = x.index_select(-2, reflect_indices(h, top, pad_h - top, x.device))
    if pad_w:
        x = x.index_select(-1, reflect_indices(w, left, pad_w - left, x.device))
    return x, (top, left, h, w)


def crop(x: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    top, left, h, w = box
    return x[..., top : top + h, left : left + w]


def _spans(size: int, tile: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """(core start, core end, window start, window end) covering ``[0, size)``."""
    for start in range(0, size, tile):
        end = min(size, start + tile)
        yield start, end, max(0, start - halo), min(size, end + halo)


def tiled_forward(backbone: CoCoNetBackbone, a: Tensor, b: Tensor, tile: int = 512, halo: int = TILE_HALO) -> Tensor:
    """``backbone(a, b)`` computed tile by tile, equal to it up to float rounding.

    Two passes over ``tile`` x ``tile`` cores with a ``halo`` of context (all multiples of 8,
    as are the sides of ``a`` and ``b``). Pass 1 runs the encoders and the attention
    query/key projections on each window and sums the channel energies Q K^T over the tile
    cores only, which adds up to the whole-image energy; pass 2 runs the network on each
    window with those whole-image attention matrices and keeps the core of the output.
    Memory is bounded by the window size; the cost is about 1.5x one whole-image pass plus
    the halo overlap.
    """
    if tile % SIZE_MULTIPLE or halo % SIZE_MULTIPLE:
        raise ValueError(f"tile and halo must be multiples of {SIZE_MULTIPLE}, got {tile} and {halo}")
    h, w = a.shape[-2:]
    windows = [(ys, xs) for ys in _spans(h, tile, halo) for xs in _spans(w, tile, halo)]
    energies: list[Tensor | float] = [0.0] * len(LEVEL_SCALES)
    for (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) in windows:
        _, streams = backbone.encode(a[..., wy0:wy1, wx0:wx1], b[..., wy0:wy1, wx0:wx1])
        for level, (scale, ensemble, (unet, vgg)) in enumerate(zip(LEVEL_SCALES, backbone.ensembles, streams)):
            core = slice((y0 - wy0) // scale, (y1 - wy0) // scale), slice((x0 - wx0) // scale, (x1 - wx0) // scale)
            energies[level] = energies[level] + ensemble.energy(unet, vgg, core).double()
    attention = [ChannelAttention.attention_from_energy(e.to(a.dtype)) for e in energies]  # type: ignore[union-attr]
    out = a.new_empty(a.shape)
    for (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) in windows:
        fused = backbone(a[..., wy0:wy1, wx0:wx1], b[..., wy0:wy1, wx0:wx1], attention)
        out[..., y0:y1, x0:x1] = fused[..., y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
    return out


class CoCoNet(nn.Module):
    """Registry interface: ``forward(ir, vis)`` on ``(B, 1, H, W)`` luma in [0, 1], any H x W.

    Maps to [-1, 1], reflection-pads to a multiple of 8, runs :class:`CoCoNetBackbone` with the
    visible image as A and the infrared one as B, crops, maps back to [0, 1]. Weights are kept
    channels_last (faster convolutions on CPU). Use eval mode for inference (BatchNorm with
    running statistics); :meth:`fuse` tiles images wider than ``max_width`` or larger than
    ``max_pixels``.
    """

    max_width = 2200
    max_pixels = 2200 * 1800

    def __init__(self, vgg_weights: str | os.PathLike | None = None, vgg_seed: int = DEFAULT_VGG_SEED) -> None:
        super().__init__()
        self.backbone = CoCoNetBackbone(vgg_weights, vgg_seed)
        self.to(memory_format=torch.channels_last)

    def _prepare(self, ir: Tensor, vis: Tensor) -> tuple[Tensor, Tensor, tuple[int, int, int, int]]:
        a, box = pad_to_multiple(vis * 2 - 1)
        b, _ = pad_to_multiple(ir * 2 - 1)
        return a, b, box

    def forward(self, ir: Tensor, vis: Tensor) -> Tensor:
        a, b, box = self._prepare(ir, vis)
        return (crop(self.backbone(a, b), box) + 1) / 2

    def onnx_core(self) -> tuple[nn.Module, int]:
        """What ONNX export traces, and the size multiple its inputs must be padded to.

        The padding depends on the image size through Python integers, which tracing would
        freeze, so the exported graph takes inputs already padded (``contrafuse.export.OnnxModel``
        pads and crops around it).
        """
        return _PaddedInputCoCoNet(self.backbone), SIZE_MULTIPLE

    @torch.inference_mode()
    def fuse(self, ir: Tensor, vis: Tensor, tile: int = 512, halo: int = TILE_HALO) -> Tensor:
        """Like :meth:`forward` (up to float rounding), with memory bounded for large images."""
        h, w = ir.shape[-2:]
        if w <= self.max_width and h * w <= self.max_pixels:
            return self.forward(ir, vis)
        a, b, box = self._prepare(ir, vis)
        return (crop(tiled_forward(self.backbone, a, b, tile, halo), box) + 1) / 2


class _PaddedInputCoCoNet(nn.Module):
    """``forward(ir, vis)`` on [0, 1] inputs whose H and W are multiples of 8 (no padding)."""

    def __init__(self, backbone: CoCoNetBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, ir: Tensor, vis: Tensor) -> Tensor:
        return (self.backbone(vis * 2 - 1, ir * 2 - 1) + 1) / 2


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total, trainable and frozen parameter counts of ``model``."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


@register_model(
    "coconet",
    description="CoCoNet (Liu et al., IJCV 2024), infrared-visible; our weights (random-feature VGG unless noted)",
    default_weights="coconet.safetensors",
)
def coconet() -> nn.Module:
    return CoCoNet()


@register_model(
    "coconet-medical",
    description="CoCoNet retrained for medical pairs (--ir CT/PET/SPECT, --vis MRI); our weights",
    default_weights="coconet-medical.safetensors",
    task="medical",
)
def coconet_medical() -> nn.Module:
    return CoCoNet()
