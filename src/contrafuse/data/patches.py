"""Random training patches from registered pairs, reproducible per sample.

:class:`PatchPairs` reads and checks every pair when it is built (so bad data stops a run
before its first step, with the file named), keeps the decoded pixels in memory, and cuts
patches on demand. Items are keyed by ``(pair_index, sample_seed)``: the crop, flips and any
``transform`` randomness come from ``numpy.random.default_rng(sample_seed)``, so an item does
not depend on worker processes, on the order items are fetched, or on how a run was resumed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..color import rgb_to_luma
from ..errors import ImageReadError, PairError
from ..io import max_value, read_image
from .datasets import PairFiles

Item = dict[str, Any]
Transform = Callable[[Item, np.random.Generator], Item]


@dataclass
class LoadedPair:
    name: str
    ir: np.ndarray  # as stored: (H, W) gray or (H, W, 3) RGB, uint8/uint16
    vis: np.ndarray


def luma01(pixels: np.ndarray) -> np.ndarray:
    """BT.601 luma of gray ``(H, W)`` or RGB ``(H, W, 3)`` integer pixels, float32 in [0, 1]."""
    scale = float(max_value(pixels))
    values = rgb_to_luma(pixels) if pixels.ndim == 3 else pixels.astype(np.float64)
    return (values / scale).astype(np.float32)


def load_pair(pair: PairFiles, min_size: int = 1) -> LoadedPair:
    """Decode both files of a pair and check they fit together and hold a ``min_size`` patch.

    Raises:
        ImageReadError: a file is missing or unreadable (names the file).
        PairError: the sizes differ, or an image is smaller than ``min_size`` (names the files).
    """
    ir, vis = read_image(pair.ir), read_image(pair.vis)
    if ir.shape[:2] != vis.shape[:2]:
        raise PairError(f"{pair.ir} is {ir.shape[1]}x{ir.shape[0]} but {pair.vis} is {vis.shape[1]}x{vis.shape[0]}")
    height, width = ir.shape[:2]
    if min(height, width) < min_size:
        raise PairError(
            f"{pair.ir} and {pair.vis} are {width}x{height}, smaller than the {min_size}x{min_size} training patch"
        )
    return LoadedPair(pair.name, ir, vis)


def load_pairs(pairs: Sequence[PairFiles], min_size: int = 1) -> list[LoadedPair]:
    """:func:`load_pair` for every pair, in order; the first bad file stops with its error."""
    if not pairs:
        raise PairError("no image pairs to train on (empty split?)")
    return [load_pair(pair, min_size) for pair in pairs]


def sample_rng(sample_seed: int) -> np.random.Generator:
    return np.random.default_rng(sample_seed)


def random_crop_box(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly placed ``size`` x ``size`` window."""
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def random_flips(rng: np.random.Generator, enabled: bool) -> tuple[bool, bool]:
    """(horizontal, vertical) flips, each with probability 1/2 (draws happen even when disabled)."""
    flips = rng.random(2) < 0.5
    return (bool(flips[0]) and enabled, bool(flips[1]) and enabled)


def cut_patch(pixels: np.ndarray, top: int, left: int, size: int, flips: tuple[bool, bool]) -> np.ndarray:
    """Luma patch ``(size, size)`` float32 in [0, 1], flipped as asked."""
    patch = luma01(pixels[top : top + size, left : left + size])
    if flips[0]:
        patch = patch[:, ::-1]
    if flips[1]:
        patch = patch[::-1, :]
    return np.ascontiguousarray(patch)


class PatchPairs(Dataset):
    """Random aligned patches of registered pairs.

    ``dataset[(pair_index, sample_seed)]`` (or a plain ``pair_index``, seed 0) returns
    ``{"ir": (1, P, P), "vis": (1, P, P), "name": str}`` with float32 luma in [0, 1], the same
    crop and flips applied to both images, then ``transform(item, rng)`` if given (numpy arrays
    ``(P, P)`` are turned into ``(1, P, P)`` tensors after it). ``len`` is the number of pairs.
    """

    def __init__(
        self,
        pairs: Sequence[PairFiles],
        patch_size: int,
        flips: bool = True,
        transform: Transform | None = None,
    ) -> None:
        if patch_size < 1:
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        self.pairs = list(pairs)
        self.patch_size = patch_size
        self.flips = flips
        self.transform = transform
        self.loaded = load_pairs(self.pairs, patch_size)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pairs]

    def __len__(self) -> int:
        return len(self.loaded)

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        index, seed = (key, 0) if isinstance(key, (int, np.integer)) else key
        rng = sample_rng(int(seed))
        pair = self.loaded[int(index)]
        height, width = pair.ir.shape[:2]
        top, left = random_crop_box(height, width, self.patch_size, rng)
        flips = random_flips(rng, self.flips)
        item: Item = {
            "ir": cut_patch(pair.ir, top, left, self.patch_size, flips),
            "vis": cut_patch(pair.vis, top, left, self.patch_size, flips),
            "name": pair.name,
        }
        if self.transform is not None:
            item = self.transform(item, rng)
        return {k: _as_tensor(v) for k, v in item.items()}


def _as_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor
    return value


def check_readable(pairs: Sequence[PairFiles]) -> None:
    """Decode every file of ``pairs`` (no size requirement); raises the first read error."""
    for pair in pairs:
        for path in (pair.ir, pair.vis):
            if not os.path.exists(path):
                raise ImageReadError(path, "file not found")
        load_pair(pair)
