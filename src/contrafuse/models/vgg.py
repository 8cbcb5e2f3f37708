"""VGG19 feature extractor in torchvision's layout, with one grey input channel.

CoCoNet uses VGG19 twice (docs/coconet.md):

- :class:`VGGTrunk`, inside the network: ``features[0:18]`` (conv1_1 .. relu3_4) with an extra
  2x2 max-pool inserted after relu1_1, so its three taps (64 ch @ H/2, 128 ch @ H/4,
  256 ch @ H/8) line up with the U-Net encoder levels 2, 3 and 4.
- :class:`VGGLossFeatures`, the fixed feature space of the contrastive loss: ``features[0:30]``
  at the standard resolutions, taps relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.

Both are built from a "VGG source": either a user's torchvision ImageNet ``vgg19`` state-dict
file (the RGB first conv collapsed to grey with 0.299/0.587/0.114), or, by default, a frozen
random VGG19 drawn from a fixed seed with torchvision's own init (Kaiming-normal, fan_out,
ReLU gain; zero biases). Nothing is ever downloaded. Inputs are grey images on the [-1, 1]
scale with no ImageNet normalisation, as in the official code.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import WeightsError
from .weights import read_reference_pickle, read_safetensors

# torchvision's cfg "E": numbers are 3x3 conv widths, "M" a 2x2 max-pool.
VGG19_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)
GRAY_FROM_RGB = (0.299, 0.587, 0.114)
DEFAULT_VGG_SEED = 0
TRUNK_DEPTH = 18  # features[0:18]: conv1_1 .. relu3_4
LOSS_DEPTH = 30  # features[0:30]: conv1_1 .. relu5_1
LOSS_TAPS = (2, 7, 12, 21, 30)  # slice ends of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
LOSS_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


VGG19_LENGTH = 37  # modules in torchvision's vgg19().features: 16 convs + 16 ReLUs + 5 pools


def conv_shapes(depth: int = VGG19_LENGTH, in_channels: int = 1) -> dict[int, tuple[int, int]]:
    """``{features index: (in, out channels)}`` of the convs among the first ``depth`` modules."""
    shapes, index, channels = {}, 0, in_channels
    for width in VGG19_LAYOUT:
        if width == "M":
            index += 1
            continue
        if index < depth:
            shapes[index] = (channels, int(width))
        channels, index = int(width), index + 2
    return shapes


def vgg19_features(depth: int = VGG19_LENGTH, in_channels: int = 1) -> nn.Sequential:
    """The first ``depth`` modules of torchvision's ``vgg19().features``."""
    layers: list[nn.Module] = []
    channels = in_channels
    for width in VGG19_LAYOUT:
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(width), 3, padding=1), nn.ReLU(inplace=True)]
            channels = int(width)
    return nn.Sequential(*layers[:depth])


def random_vgg19_state(depth: int, seed: int = DEFAULT_VGG_SEED) -> dict[str, Tensor]:
    """A seeded random grey VGG19 state dict (``features.N.weight/bias`` keys).

    torchvision's VGG init (Kaiming-normal, fan_out, ReLU; zero bias): unlike PyTorch's default
    conv init it keeps deep random features from collapsing (docs/coconet.md section 8.2). The
    draw is made on the CPU, one conv after the other, so any ``depth`` gives the same prefix.
    """
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    for index, (cin, cout) in conv_shapes(depth).items():
        weight = torch.empty(cout, cin, 3, 3)
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu", generator=generator)
        state[f"features.{index}.weight"] = weight
        state[f"features.{index}.bias"] = torch.zeros(cout)
    return state


def read_vgg19_state(path: str | os.PathLike, depth: int) -> dict[str, Tensor]:
    """The grey ``features.N.*`` tensors (N < ``depth``) of a torchvision VGG19 state-dict file.

    Accepts ``.safetensors`` or a ``torch.save`` of a plain dict of tensors (read by the safe
    reader of :mod:`.weights`: no code runs, sizes are checked before anything is
    decompressed). ``module.`` prefixes and ``classifier.*`` keys are ignored; an RGB first conv ``(64, 3, 3, 3)`` becomes ``(64, 1, 3, 3)`` = 0.299 R + 0.587 G + 0.114 B.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: VGG weights file not found")
    raw = read_safetensors(path)[0] if path.suffix == ".safetensors" else read_reference_pickle(path)
    state = {}
    for key, value in raw.items():
        key = key.removeprefix("module.")
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "features" and parts[1].isdigit() and int(parts[1]) < depth and isinstance(value, Tensor):
            state[key] = value.float()
    first = state.get("features.0.weight")
    if first is not None and first.shape[1] == 3:
        gray = torch.tensor(GRAY_FROM_RGB).view(1, 3, 1, 1)
        state["features.0.weight"] = (first * gray).sum(1, keepdim=True)
    expected = {}
    for index, (cin, cout) in conv_shapes(depth).items():
        expected[f"features.{index}.weight"] = (cout, cin, 3, 3)
        expected[f"features.{index}.bias"] = (cout,)
    missing = sorted(set(expected) - set(state))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k] != tuple(state[k].shape))
    if missing or wrong:
        raise WeightsError(
            f"{path}: not a torchvision vgg19 state dict (missing {missing[:4]}, wrong shape {wrong[:4]})"
        )
    return state


def vgg_source_description(vgg_weights: str | os.PathLike | None, seed: int = DEFAULT_VGG_SEED) -> str:
    """What a weights file records about its VGG: the random seed, or the file name and hash."""
    if vgg_weights is None:
        return f"random-kaiming-normal-fan-out seed={seed}"
    digest = hashlib.sha256(Path(vgg_weights).read_bytes()).hexdigest()[:16]
    return f"file={Path(vgg_weights).name} sha256={digest}"


def vgg19_state(depth: int, vgg_weights: str | os.PathLike | None = None, seed: int = DEFAULT_VGG_SEED) -> dict[str, Tensor]:
    """State of the first ``depth`` layers: from ``vgg_weights`` when given, else seeded random."""
    return read_vgg19_state(vgg_weights, depth) if vgg_weights is not None else random_vgg19_state(depth, seed)


def _frozen(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


class VGGTrunk(nn.Module):
    """Frozen VGG19 conv1_1 .. relu3_4 with a max-pool inserted after relu1_1.

    ``forward(x)``: ``(B, 1, H, W)`` in [-1, 1], H and W multiples of 8 ->
    ``[(B, 64, H/2, W/2), (B, 128, H/4, W/4), (B, 256, H/8, W/8)]``.
    """

    def __init__(self, vgg_weights: str | os.PathLike | None = None, seed: int = DEFAULT_VGG_SEED) -> None:
        super().__init__()
        self.features = vgg19_features(TRUNK_DEPTH)
        self.features.load_state_dict({k.removeprefix("features."): v for k, v in vgg19_state(TRUNK_DEPTH, vgg_weights, seed).items()})
        _frozen(self)

    def first_block(self, x: Tensor) -> Tensor:
        """maxpool2(relu(conv1_1(x))), ``(B, 1, H, W)`` -> ``(B, 64, H/2, W/2)``."""
        return F.max_pool2d(F.relu(self.features[0](x)), 2)

    def forward(self, x: Tensor) -> list[Tensor]:
        f = self.features
        x = self.first_block(x)  # conv1_1, relu, the inserted pool
        v1 = f[3](f[2](x))
        v2 = f[4:9](v1)
        v3 = f[9:18](v2)
        return [v1, v2, v3]


class VGGLossFeatures(nn.Module):
    """Frozen VGG19 relu1_1 .. relu5_1 taps: the contrastive loss's feature space G.

    ``forward(x)``: ``(B, 1, H, W)`` in [-1, 1] -> five maps at H, H/2, H/4, H/8, H/16 with
    64, 128, 256, 512, 512 channels. ``layer_weights`` are the taps' weights lambda_i.
    """

    layer_weights = LOSS_LAYER_WEIGHTS

    def __init__(self, vgg_weights: str | os.PathLike | None = None, seed: int = DEFAULT_VGG_SEED) -> None:
        super().__init__()
        self.features = vgg19_features(LOSS_DEPTH)
        self.features.load_state_dict({k.removeprefix("features."): v for k, v in vgg19_state(LOSS_DEPTH, vgg_weights, seed).items()})
        _frozen(self).eval()

    def train(self, mode: bool = True) -> "VGGLossFeatures":
        return super().train(False)  # a fixed metric space: never leaves eval mode

    def forward(self, x: Tensor) -> list[Tensor]:
        taps, start = [], 0
        for end in LOSS_TAPS:
            x = self.features[start:end](x)
            taps.append(x)
            start = end
        return taps
