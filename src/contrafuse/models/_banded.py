"""Memory-bounded CS2Fusion inference in horizontal bands, equal to the whole-image forward.

Every layer is a 3x3 convolution, so a band plus a halo of 8 rows (the network's depth)
reproduces the whole-image result inside the band. The three DDM gates are the only
whole-image quantities: each needs the channel max and mean of a decoder stage over all
rows before the next stage can be computed.

Every image of a batch is computed exactly as it would be alone (convolutions, statistics and
gates are per image), which the batching folder pipeline relies on. On CUDA, where memory is
plentiful and each band costs kernel launches, an image that fits runs whole instead.
"""
from __future__ import annotations

import threading

import torch
from torch import Tensor

from .cs2fusion import Cs2FusionBackbone, activation, stack_levels

HALO = 8
# Peak memory of the whole-image forward, in tensor elements per pixel (measured on CPU: about
# 690), with a margin; CUDA runs an image whole when this fits in half the free memory.
WHOLE_IMAGE_ELEMENTS_PER_PIXEL = 800
_LAYOUT_LOCK = threading.Lock()


def per_image(function, x: Tensor) -> Tensor:
    """``function`` applied to each image of the batch ``x`` alone, results stacked.

    For the whole-image reductions and the gate convolutions on ``(B, C, 1, 1)`` statistics:
    their kernels sum in an order that depends on the batch size, and a batch must give exactly
    what single images give. (They are cheap; the convolutions over pixels are batch-invariant.)
    """
    if x.shape[0] == 1:
        return function(x)
    return torch.cat([function(x[i : i + 1]) for i in range(x.shape[0])])


def _bands(height: int, rows: int, halo: int = HALO) -> list[tuple[int, int, int, int]]:
    """(start, stop) of each band and the (lo, hi) input rows it is computed from."""
    spans = []
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        spans.append((start, stop, max(0, start - halo), min(height, stop + halo)))
    return spans


class _Statistics:
    """Running channel max and sum of a decoder stage over bands."""

    def __init__(self) -> None:
        self.maximum: Tensor | None = None
        self.total: Tensor | None = None
        self.count = 0

    def add(self, d: Tensor) -> None:
        band_max = per_image(lambda x: x.amax(dim=(2, 3), keepdim=True), d)
        band_sum = per_image(lambda x: x.sum(dim=(2, 3), keepdim=True, dtype=torch.float64), d)
        self.maximum = band_max if self.maximum is None else torch.maximum(self.maximum, band_max)
        self.total = band_sum if self.total is None else self.total + band_sum
        self.count += d.shape[2] * d.shape[3]

    def stacked(self) -> Tensor:
        assert self.maximum is not None and self.total is not None
        mean = (self.total / self.count).to(self.maximum.dtype)
        return torch.cat([self.maximum, mean], 1)


def _stacked_features(encoder: torch.nn.Module, x: Tensor) -> Tensor:
    # per image: oneDNN picks the kernel of the 1-channel first conv by batch size on small inputs
    return per_image(lambda image: stack_levels(encoder(image)), x)


def _band_encode(net: Cs2FusionBackbone, ir: Tensor, vis: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    f_vis, f_ir = _stacked_features(net.encoder_vis, vis), _stacked_features(net.encoder_ir, ir)
    weight, bias = net.decoder[0].weight, net.decoder[0].bias
    # decoder[0] on cat[F_vis, F_ir] split into its two input halves: avoids a 128-channel copy
    d1 = torch.nn.functional.conv2d(f_vis, weight[:, :64], bias, padding=1)
    d1 += torch.nn.functional.conv2d(f_ir, weight[:, 64:], None, padding=1)
    return activation(d1), f_vis, f_ir


def _band_forward(net: Cs2FusionBackbone, ir: Tensor, vis: Tensor, gates: list[Tensor]) -> Tensor:
    """Decoder stage ``len(gates)`` (before its gate) of one band; the output once all 3 are known."""
    d, f_vis, f_ir = _band_encode(net, ir, vis)
    for stage, gate in enumerate(gates):
        d = d + gate * net.ddm[stage].projection(f_vis, f_ir)
        layer = net.decoder[stage + 1]
        d = layer(d) if stage == 2 else activation(layer(d))
    return d


def _recomputing(net: Cs2FusionBackbone, ir: Tensor, vis: Tensor, rows: int) -> Tensor:
    """One sweep over the bands per gate, then one for the output: memory O(band)."""
    spans = _bands(ir.shape[2], rows)
    gates: list[Tensor] = []
    for stage in range(3):
        stats = _Statistics()
        for start, stop, lo, hi in spans:
            d = _band_forward(net, ir[:, :, lo:hi], vis[:, :, lo:hi], gates)
            stats.add(d[:, :, start - lo : stop - lo])
        gates.append(per_image(net.ddm[stage].gate.from_statistics, stats.stacked()))
    out = ir.new_empty(ir.shape)
    for start, stop, lo, hi in spans:
        out[:, :, start:stop] = _band_forward(net, ir[:, :, lo:hi], vis[:, :, lo:hi], gates)[:, :, start - lo : stop - lo]
    return out


def _conv_no_bias(layer: torch.nn.Conv2d, x: Tensor) -> Tensor:
    return torch.nn.functional.conv2d(x, layer.weight, None, padding=1)


def _caching(net: Cs2FusionBackbone, ir: Tensor, vis: Tensor, rows: int) -> Tensor:
    """One sweep over the bands, keeping 81 channels per pixel, then the decoder tail.

    Each DDM adds ``g * P`` before a convolution, so conv(D + g P) = conv(D) + g conv'(P)
    (conv' without bias). The bands store conv(D1), conv'(P1), conv'(P2) and conv'(P3)
    instead of D1 and the projections (32+32+16+1 channels instead of 64+64+32+16);
    the gates, scalars, are applied afterwards.
    """
    b, _, h, w = ir.shape
    empty = lambda channels: torch.empty(b, channels, h, w, dtype=ir.dtype, device=ir.device, memory_format=torch.channels_last)  # noqa: E731
    d2_base, d2_gated, d3_gated, out_gated = empty(32), empty(32), empty(16), empty(1)
    d1_stats = _Statistics()
    # the stored maps sit 6 convolutions deep: a 6-row halo is exact
    for start, stop, lo, hi in _bands(h, rows, halo=6):
        d1, f_vis, f_ir = _band_encode(net, ir[:, :, lo:hi], vis[:, :, lo:hi])
        keep = slice(start - lo, stop - lo)
        d1_stats.add(d1[:, :, keep])
        d2_base[:, :, start:stop] = net.decoder[1](d1)[:, :, keep]
        del d1
        for target, ddm, layer in zip((d2_gated, d3_gated, out_gated), net.ddm, net.decoder[1:]):
            target[:, :, start:stop] = _conv_no_bias(layer, ddm.projection(f_vis, f_ir))[:, :, keep]
    gate = per_image(net.ddm[0].gate.from_statistics, d1_stats.stacked())
    d = activation(d2_base.add_(d2_gated.mul_(gate)))
    del d2_gated
    gate = per_image(net.ddm[1].gate, d)
    d = activation(net.decoder[2](d).add_(d3_gated.mul_(gate)))
    del d3_gated
    gate = per_image(net.ddm[2].gate, d)
    return net.decoder[3](d).add_(out_gated.mul_(gate))


def banded_cs2fusion(
    net: Cs2FusionBackbone, *, ir: Tensor, vis: Tensor, rows: int | None = None, max_cached_pixels: int = 2_000_000
) -> Tensor:
    """Fused luma (0-255 scale) of ``(B, 1, H, W)`` inputs on 0-255, band by band (whole on CUDA when it fits)."""
    # channels-last lets oneDNN run these thin 3x3 convolutions about twice as fast on CPU
    _to_channels_last(net)
    ir, vis = ir.contiguous(memory_format=torch.channels_last), vis.contiguous(memory_format=torch.channels_last)
    if rows is None and _whole_image_fits(ir):
        return net(ir=ir, vis=vis).fused
    width = ir.shape[3]
    if ir.shape[2] * width <= max_cached_pixels:
        return _caching(net, ir, vis, rows or max(16, 40_960 // width))
    return _recomputing(net, ir, vis, rows or max(16, 262_144 // width))


def _to_channels_last(net: Cs2FusionBackbone) -> None:
    """Convert the weights once (parallel workers share the module)."""
    if not net.decoder[0].weight.is_contiguous(memory_format=torch.channels_last):
        with _LAYOUT_LOCK:
            net.to(memory_format=torch.channels_last)


def _whole_image_fits(x: Tensor) -> bool:
    """On CUDA: does the whole-image forward of ``x`` ``(B, 1, H, W)`` fit in half the free memory?"""
    if x.device.type != "cuda":
        return False
    element = 2 if torch.is_autocast_enabled("cuda") else x.element_size()
    free, _ = torch.cuda.mem_get_info(x.device)
    return x.shape[0] * x.shape[2] * x.shape[3] * WHOLE_IMAGE_ELEMENTS_PER_PIXEL * element <= free // 2
