"""CoCoNet inference behind :meth:`CoCoNet.fuse`: the plain network's result, faster, and tiled.

:func:`inference_network` makes a copy of a :class:`CoCoNetBackbone` that shares its tensors
and whose blocks run the same arithmetic in a cheaper way (tested against the plain forward):

* conv -> LeakyReLU -> eval BatchNorm in place: a fresh full-resolution tensor costs more than
  the arithmetic on it (page faults), and eval BN is a per-channel affine map;
* the channel attention's mixing (gamma A + I) V computed pixel-major, which is the
  channels_last layout already;
* that mixing folded into the merge conv's weights, image by image:
  merge(cat_s[M_s V_s]) = conv(cat_s[W_s M_s], cat_s[V_s]), W_s the merge weights of stream s,
  so the A V matmuls and their outputs are never made;
* the channel energies Q K^T summed over fixed blocks of pixels, in float32 whatever the
  autocast precision (a sum over all pixels overflows float16), so that the batch size does not
  change a bit of the result: a batch of images gives exactly what one image at a time gives
  (the folder pipeline relies on it; the thread count still changes low bits, through oneDNN's
  wide convolutions, so the pipeline runs CoCoNet on one worker);
* VGG conv1_1 + ReLU + the inserted max-pool per pooling phase from 3x3 patches (a 9 -> 64
  matmul per phase, then the max of the four), without the full-resolution 64-channel map.

:func:`tiled_forward` runs images too large for one pass tile by tile, exactly: the channel
attention needs whole-image statistics, which are summed over the tiles first.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .coconet import (
    LEVEL_SCALES,
    SIZE_MULTIPLE,
    SLOPE,
    TILE_HALO,
    ChannelAttention,
    CoCoNet,
    CoCoNetBackbone,
    ConvActNorm,
    FeatureEnsemble,
    from_network_output,
    to_network_input,
)
from .vgg import VGGTrunk


class _InPlaceConvActNorm(ConvActNorm):
    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        F.leaky_relu_(y, SLOPE)
        if isinstance(self.norm, torch.nn.BatchNorm2d):
            scale = self.norm.weight * torch.rsqrt(self.norm.running_var + self.norm.eps)
            shift = self.norm.bias - self.norm.running_mean * scale
            y.mul_(scale.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1))
        return y


ENERGY_BLOCK = 2048  # pixels per partial Q K^T: the same blocks whatever the batch


def blocked_energy(q: Tensor, k: Tensor) -> Tensor:
    """E = Q K^T over all pixels ``(B, C, h, w)`` twice -> float32 ``(B, C, C)``, independent of the batch.

    Partial products over fixed pixel blocks, added in a fixed order; computed in float32 with
    autocast off (reduced-precision energies overflow).
    """
    q, k = q.flatten(2), k.flatten(2)
    pixels = q.shape[2]
    with torch.autocast(q.device.type, enabled=False):
        q, k = q.float(), k.float()
        energy = None
        for start in range(0, pixels, ENERGY_BLOCK):
            part = torch.bmm(q[..., start : start + ENERGY_BLOCK], k[..., start : start + ENERGY_BLOCK].transpose(1, 2))
            energy = part if energy is None else energy.add_(part)
    return energy


class _PixelMajorAttention(ChannelAttention):
    energy = staticmethod(blocked_energy)

    def forward(self, x: Tensor, attention: Tensor | None = None) -> Tensor:
        v, attention = self.values_and_attention(x, attention)
        # (M V)^T = V^T M^T: for a channels_last V the result is channels_last already
        mixed = torch.bmm(v.flatten(2).transpose(1, 2), self.mixing(attention).transpose(1, 2))
        return mixed.transpose(1, 2).reshape(v.shape)


class _FoldedEnsemble(FeatureEnsemble):
    def forward(self, unet: Tensor, vgg: Tensor, attention: Tensor | None = None) -> Tensor:
        b = unet.shape[0]
        if b == 1:
            return self._folded(unet, vgg, attention)
        # one image at a time: the folded weights are per image, and a batch must equal single images
        vgg_vis, vgg_ir = vgg.chunk(2)
        return torch.cat([
            self._folded(unet[i : i + 1], torch.cat([vgg_vis[i : i + 1], vgg_ir[i : i + 1]]),
                         None if attention is None else attention[i :: b])
            for i in range(b)
        ])

    def _folded(self, unet: Tensor, vgg: Tensor, attention: Tensor | None) -> Tensor:
        """One image: ``unet`` ``(1, C, h, w)``, ``vgg`` ``(2, C, h, w)``, ``attention`` None or ``(3, C, C)``."""
        ca, c = self.attention, self.attention.channels
        v_unet, a_unet = ca.values_and_attention(unet, None if attention is None else attention[:1])
        v_vgg, a_vgg = ca.values_and_attention(vgg, None if attention is None else attention[1:])
        mix = ca.mixing(torch.cat([a_unet, a_vgg]))
        merge_weight = self.merge.weight.float()  # the fold is done in float32 even under autocast
        weight = torch.einsum("osjyx,sji->osiyx", merge_weight.unflatten(1, (3, c)), mix.float()).flatten(1, 2)
        values = torch.cat([v_unet, *v_vgg.chunk(2)], dim=1)
        weight = weight.to(values.dtype)
        if unet.is_contiguous(memory_format=torch.channels_last):
            weight = weight.contiguous(memory_format=torch.channels_last)
        return F.conv2d(values, weight, self.merge.bias.to(values.dtype), padding=1)


class _PhaseVGGTrunk(VGGTrunk):
    def first_block(self, x: Tensor) -> Tensor:
        conv = self.features[0]
        b, _, h, w = x.shape
        patches = F.unfold(x, 3, padding=1).view(b, 9, h // 2, 2, w // 2, 2)
        weight = conv.weight.reshape(conv.out_channels, 9).t()
        best = None
        for py, px in itertools.product((0, 1), (0, 1)):
            phase = torch.matmul(patches[:, :, :, py, :, px].reshape(b, 9, -1).transpose(1, 2), weight)
            best = phase if best is None else torch.maximum(best, phase, out=best)
        best.add_(conv.bias).relu_()  # the max commutes with adding a per-channel bias and ReLU
        return best.transpose(1, 2).reshape(b, conv.out_channels, h // 2, w // 2)  # channels_last layout


_FAST_CLASSES = {
    ConvActNorm: _InPlaceConvActNorm,
    ChannelAttention: _PixelMajorAttention,
    FeatureEnsemble: _FoldedEnsemble,
    VGGTrunk: _PhaseVGGTrunk,
}


def inference_network(backbone: CoCoNetBackbone) -> CoCoNetBackbone:
    """A copy of ``backbone`` (eval mode) sharing its tensors, with the fast blocks above."""
    shared = {id(t): t for t in itertools.chain(backbone.parameters(), backbone.buffers())}
    fast = copy.deepcopy(backbone, memo=shared)
    for module in fast.modules():
        module.__class__ = _FAST_CLASSES.get(type(module), type(module))
    return fast.eval()


def _spans(size: int, tile: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """(core start, core end, window start, window end) covering ``[0, size)``."""
    for start in range(0, size, tile):
        end = min(size, start + tile)
        yield start, end, max(0, start - halo), min(size, end + halo)


def tiled_forward(backbone: CoCoNetBackbone, *, ir: Tensor, vis: Tensor, tile: int = 512, halo: int = TILE_HALO) -> Tensor:
    """``backbone(ir=ir, vis=vis)`` computed tile by tile, equal to it up to float rounding.

    Two passes over ``tile`` x ``tile`` cores with a ``halo`` of context (all multiples of 8,
    as are the sides of the inputs). Pass 1 runs the encoders and the attention query/key
    projections on each window and sums the channel energies Q K^T over the tile cores only,
    which adds up to the whole-image energy; pass 2 runs the network on each window with those
    whole-image attention matrices and keeps the core of the output. Memory is bounded by the
    window size; the cost is about 1.5x one whole-image pass plus the halo overlap.
    """
    if tile % SIZE_MULTIPLE or halo % SIZE_MULTIPLE:
        raise ValueError(f"tile and halo must be multiples of {SIZE_MULTIPLE}, got {tile} and {halo}")
    h, w = ir.shape[-2:]
    windows = [(ys, xs) for ys in _spans(h, tile, halo) for xs in _spans(w, tile, halo)]
    energies: list[Tensor | float] = [0.0] * len(LEVEL_SCALES)
    for (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) in windows:
        _, streams = backbone.encode(ir=ir[..., wy0:wy1, wx0:wx1], vis=vis[..., wy0:wy1, wx0:wx1])
        for level, (scale, ensemble, (unet, vgg)) in enumerate(zip(LEVEL_SCALES, backbone.ensembles, streams)):
            core = slice((y0 - wy0) // scale, (y1 - wy0) // scale), slice((x0 - wx0) // scale, (x1 - wx0) // scale)
            energies[level] = energies[level] + ensemble.energy(unet, vgg, core).double()
    attention = [ChannelAttention.attention_from_energy(e.to(ir.dtype)) for e in energies]  # type: ignore[union-attr]
    out = ir.new_empty(ir.shape)
    for (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) in windows:
        fused = backbone(ir=ir[..., wy0:wy1, wx0:wx1], vis=vis[..., wy0:wy1, wx0:wx1], attention=attention)
        out[..., y0:y1, x0:x1] = fused[..., y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
    return out


def fast_fuse(model: CoCoNet, *, ir: Tensor, vis: Tensor, tile: int = 512, halo: int = TILE_HALO) -> Tensor:
    """``model(ir=ir, vis=vis)`` by the fast network; tiled above ``model.max_width`` / ``max_pixels``.

    A model in training mode (BatchNorm on batch statistics) runs its plain forward.
    """
    if model.training:
        return model(ir=ir, vis=vis)
    net = inference_network(model.backbone)
    h, w = ir.shape[-2:]
    ir, vis, box = to_network_input(ir=ir, vis=vis)
    if w <= model.max_width and h * w <= model.max_pixels:
        fused = net(ir=ir, vis=vis)
    else:
        fused = tiled_forward(net, ir=ir, vis=vis, tile=tile, halo=halo)
    return from_network_output(fused, box)
