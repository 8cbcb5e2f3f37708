"""CoCoNet CPU inference time: contrafuse's CoCoNet against the official layout, same run.

The reference below re-creates the official ``Unet_resize_conv`` class structure from
docs/coconet.md section 1 (dead layers se_32 / att_deconv9 / max_pool4 included, separate
q/k/v convs, the VGG trunk run once per modality, reflection padding to 16, F.interpolate
bilinear) and runs it the way the official test script does: a plain eager forward with
BatchNorm in train mode (batch statistics), under ``no_grad``. Ours runs in eval mode under
``inference_mode``. Both get the same random weights: before timing, the reference's weights
are copied into ours and the two are checked to agree in eval mode.

    PYTHONPATH=src python benchmarks/inference_coconet.py [--height 480 --width 640 --repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrafuse.models.coconet import CoCoNet, parameter_counts
from contrafuse.models.vgg import vgg19_features


class ReferenceCAM(nn.Module):
    """The official CAM_Module: separate 3x3 q/k/v convs, out = gamma * A V + V."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.key_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.value_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c, h, w = x.shape
        q = self.query_conv(x).view(n, c, -1)
        k = self.key_conv(x).view(n, c, -1).permute(0, 2, 1)
        energy = torch.bmm(q, k)
        energy_new = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        attention = torch.softmax(energy_new, dim=-1)
        v = self.value_conv(x)
        out = torch.bmm(attention, v.view(n, c, -1)).view(n, c, h, w)
        return self.gamma * out + v, self.gamma


class ReferenceVgg19Unet(nn.Module):
    """The official Vgg19_Unet: three slices, a max-pool inserted after relu1_1."""

    def __init__(self) -> None:
        super().__init__()
        features = vgg19_features(18)
        self.slice1 = nn.Sequential(features[0], features[1], nn.MaxPool2d(2, 2), features[2], features[3])
        self.slice2 = nn.Sequential(*[features[i] for i in range(4, 9)])
        self.slice3 = nn.Sequential(*[features[i] for i in range(9, 18)])
        for parameter in self.parameters():
            parameter.requires_grad = False

    def forward(self, x: Tensor) -> list[Tensor]:
        h1 = self.slice1(x)
        h2 = self.slice2(h1)
        return [h1, h2, self.slice3(h2)]


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class ReferenceUnetResizeConv(nn.Module):
    """The official Unet_resize_conv layer for layer, forward(A, B) on [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        blocks = {
            "1_1": (2, 32), "1_2": (32, 32), "2_1": (32, 64), "2_2": (64, 64), "3_1": (64, 128), "3_2": (128, 128),
            "4_1": (128, 256), "4_2": (256, 256), "7_1": (256, 128), "7_2": (128, 128), "8_1": (128, 64),
            "8_2": (64, 64), "9_1": (64, 32), "9_2": (32, 32),
        }
        for name, (cin, cout) in blocks.items():
            setattr(self, f"conv{name}", _conv(cin, cout))
            setattr(self, f"LReLU{name}", nn.LeakyReLU(0.2, inplace=True))
            if name != "9_2":
                setattr(self, f"bn{name}", nn.BatchNorm2d(cout))
        self.max_pool1, self.max_pool2, self.max_pool3, self.max_pool4 = (nn.MaxPool2d(2) for _ in range(4))
        self.deconv4 = _conv(768, 256)
        self.deconv6 = _conv(256, 128)
        self.deconv7 = _conv(128, 64)
        self.deconv8 = _conv(64, 32)
        self.att_deconv7 = _conv(384, 128)
        self.att_deconv8 = _conv(192, 64)
        self.att_deconv9 = _conv(96, 32)  # never used
        self.conv10 = nn.Conv2d(32, 1, 1)
        self.se_32, self.se_64, self.se_128, self.se_256 = ReferenceCAM(32), ReferenceCAM(64), ReferenceCAM(128), ReferenceCAM(256)
        self.vgg = ReferenceVgg19Unet()

    def _block(self, name: str, x: Tensor) -> Tensor:
        x = getattr(self, f"LReLU{name}")(getattr(self, f"conv{name}")(x))
        return getattr(self, f"bn{name}")(x) if name != "9_2" else x

    def _ensemble(self, cam: ReferenceCAM, merge: nn.Conv2d, c: Tensor, va: Tensor, vb: Tensor) -> Tensor:
        return merge(torch.cat([cam(c)[0], cam(va)[0], cam(vb)[0]], 1))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        h, w = a.shape[-2:]
        pad_h, pad_w = -h % 16, -w % 16
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        if pad_h or pad_w:
            a, b = F.pad(a, pads, mode="reflect"), F.pad(b, pads, mode="reflect")
        va, vb = self.vgg(a), self.vgg(b)
        x = torch.cat([a, b], 1)
        c1 = self._block("1_2", self._block("1_1", x))
        c2 = self._block("2_2", self._block("2_1", self.max_pool1(c1)))
        c3 = self._block("3_2", self._block("3_1", self.max_pool2(c2)))
        c4 = self._block("4_1", self.max_pool3(c3))
        d4 = self._block("4_2", self._ensemble(self.se_256, self.deconv4, c4, va[2], vb[2]))
        up = self.deconv6(F.interpolate(d4, scale_factor=2, mode="bilinear"))
        d3 = torch.cat([up, self._ensemble(self.se_128, self.att_deconv7, c3, va[1], vb[1])], 1)
        d3 = self._block("7_2", self._block("7_1", d3))
        up = self.deconv7(F.interpolate(d3, scale_factor=2, mode="bilinear"))
        d2 = torch.cat([up, self._ensemble(self.se_64, self.att_deconv8, c2, va[0], vb[0])], 1)
        d2 = self._block("8_2", self._block("8_1", d2))
        up = self.deconv8(F.interpolate(d2, scale_factor=2, mode="bilinear"))
        d1 = self._block("9_2", self._block("9_1", torch.cat([up, c1], 1)))
        out = torch.tanh(self.conv10(d1))
        return out[..., pads[2] : pads[2] + h, pads[0] : pads[0] + w]


def copy_reference_weights(reference: ReferenceUnetResizeConv, ours: CoCoNet) -> None:
    """Load the reference's weights into ours (the layer correspondence of docs/coconet.md)."""
    ref, target = reference.state_dict(), {}
    renames = {
        "1_1": "enc1.0", "1_2": "enc1.1", "2_1": "enc2.0", "2_2": "enc2.1", "3_1": "enc3.0", "3_2": "enc3.1",
        "4_1": "enc4", "4_2": "bottleneck", "7_1": "dec3.0", "7_2": "dec3.1", "8_1": "dec2.0", "8_2": "dec2.1",
        "9_1": "dec1.0", "9_2": "dec1.1",
    }
    for old, new in renames.items():
        for leaf in ("weight", "bias"):
            target[f"{new}.conv.{leaf}"] = ref[f"conv{old}.{leaf}"]
        if old != "9_2":
            for leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                target[f"{new}.norm.{leaf}"] = ref[f"bn{old}.{leaf}"]
    plain = {"deconv6": "up3", "deconv7": "up2", "deconv8": "up1", "conv10": "head",
             "att_deconv8": "ensembles.0.merge", "att_deconv7": "ensembles.1.merge", "deconv4": "ensembles.2.merge"}
    for old, new in plain.items():
        for leaf in ("weight", "bias"):
            target[f"{new}.{leaf}"] = ref[f"{old}.{leaf}"]
    for level, cam in enumerate(("se_64", "se_128", "se_256")):
        for leaf in ("weight", "bias"):
            target[f"ensembles.{level}.attention.qkv.{leaf}"] = torch.cat(
                [ref[f"{cam}.{p}_conv.{leaf}"] for p in ("query", "key", "value")]
            )
        target[f"ensembles.{level}.attention.gamma"] = ref[f"{cam}.gamma"]
    vgg_index = {"slice1.0": 0, "slice1.3": 2, "slice2.1": 5, "slice2.3": 7, "slice3.1": 10, "slice3.3": 12,
                 "slice3.5": 14, "slice3.7": 16}
    for old, index in vgg_index.items():
        for leaf in ("weight", "bias"):
            target[f"vgg.features.{index}.{leaf}"] = ref[f"vgg.{old}.{leaf}"]
    ours.backbone.load_state_dict(target)


def randomise(reference: ReferenceUnetResizeConv, seed: int = 0) -> None:
    """Non-trivial attention and BN statistics, so that the equivalence check means something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, ReferenceCAM):
                module.gamma.fill_(0.5)
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(-1.5, 1.5, generator=generator)
        reference.conv10.weight.mul_(40.0)  # a random head gives a nearly flat output otherwise


def timings(run, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of ``repeats`` calls (CPU time: both threads summed;
    on a shared machine it is steadier than the wall clock)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def recorded_convolutions(reference: nn.Module, a: Tensor, b: Tensor) -> list[tuple[nn.Conv2d, torch.Size]]:
    """Every conv call of one reference forward, with its input shape."""
    calls: list[tuple[nn.Conv2d, torch.Size]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: calls.append((m, args[0].shape)))
             for m in reference.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        reference(a, b)
    for hook in hooks:
        hook.remove()
    return calls


def convolution_floor(calls: list[tuple[nn.Conv2d, torch.Size]], repeats: int) -> tuple[float, float]:
    """(seconds, GMAC) of the convolutions alone, each in its faster memory format, nothing else.

    No forward pass that does these multiply-adds with these kernels can be faster, so
    official time / this time bounds the speed-up that an exact re-implementation can reach.
    """
    total, macs = 0.0, 0.0
    with torch.inference_mode():
        for conv, shape in calls:
            x = torch.randn(shape)
            out_pixels = shape[0] * shape[2] * shape[3]  # 3x3/1x1 convs with 'same' padding, stride 1
            macs += out_pixels * conv.weight.numel() / 1e9
            best = float("inf")
            for fmt in (torch.contiguous_format, torch.channels_last):
                xf, wf = x.contiguous(memory_format=fmt), conv.weight.contiguous(memory_format=fmt)
                F.conv2d(xf, wf, conv.bias, conv.stride, conv.padding)  # warm-up
                wall, _ = timings(lambda: F.conv2d(xf, wf, conv.bias, conv.stride, conv.padding), repeats)
                best = min(best, min(wall))
            total += best
    return total, macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    reference = ReferenceUnetResizeConv()
    randomise(reference)
    ours = CoCoNet().eval()
    copy_reference_weights(reference, ours)
    print(f"parameters: official layout {parameter_counts(reference)['total']:,}, ours {parameter_counts(ours)['total']:,}")

    small_a, small_b = torch.rand(1, 1, 64, 96), torch.rand(1, 1, 64, 96)
    with torch.inference_mode():
        expected = (reference.eval()(small_a * 2 - 1, small_b * 2 - 1) + 1) / 2
        got = ours.fuse(ir=small_b, vis=small_a)  # the official A is the visible image
    print(f"eval-mode agreement on 64x96: max |ours - official| = {(expected - got).abs().max().item():.2e} "
          f"(output std {expected.std().item():.3f})")

    ir, vis = torch.rand(1, 1, args.height, args.width), torch.rand(1, 1, args.height, args.width)
    reference.train()  # as the official test script runs it: batch-statistics BN

    def run_reference() -> None:
        with torch.no_grad():
            reference(vis * 2 - 1, ir * 2 - 1)

    def run_ours() -> None:
        ours.fuse(ir=ir, vis=vis)

    run_ours(), run_reference()  # warm-up
    results: dict[str, tuple[list[float], list[float]]] = {"official": ([], []), "ours": ([], [])}
    for _ in range(args.repeats):  # interleaved, so that load changes hit both alike
        for name, run in (("official", run_reference), ("ours", run_ours)):
            wall, cpu = timings(run, 1)
            results[name][0].extend(wall)
            results[name][1].extend(cpu)
    print(f"{args.width}x{args.height}, {torch.get_num_threads()} threads, median of {args.repeats} (wall / process CPU seconds)")
    labels = {"official": "official layout (eager, train-mode BN)", "ours": "contrafuse CoCoNet (eval, channels_last)"}
    medians = {}
    for name, (wall, cpu) in results.items():
        medians[name] = statistics.median(wall), statistics.median(cpu)
        print(f"  {labels[name]:42s} wall {medians[name][0]:6.2f} s  cpu {medians[name][1]:6.2f} s  "
              f"runs {['%.2f' % t for t in wall]}")
    print(f"  speed-up: wall {medians['official'][0] / medians['ours'][0]:.2f}x, "
          f"cpu {medians['official'][1] / medians['ours'][1]:.2f}x")
    floor, macs = convolution_floor(recorded_convolutions(reference, vis * 2 - 1, ir * 2 - 1), args.repeats)
    print(f"  the official layout's {macs:.1f} GMAC of convolutions alone (fastest of {args.repeats}, each in its "
          f"faster memory format): {floor:.2f} s, so exact arithmetic caps the speed-up at "
          f"{medians['official'][0] / floor:.2f}x of the official wall time")

if __name__ == "__main__":
    main()
