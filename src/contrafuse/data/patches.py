"""Random training patches from registered pairs, reproducible per sample.

:class:`PatchPairs` reads and checks every pair when it is built (so bad data stops a run
before its first step, with the file named), keeps the decoded pixels in memory, and cuts
patches on demand. Items are keyed by ``(pair_index, sample_seed)``: the crop, flips and any
``transform`` randomness come from ``numpy.random.default_rng(sample_seed)``, so an item does
not depend on worker processes, on the order items are fetched, or on how a run was resumed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..color import luma01
from ..errors import PairError
from ..io import PairFiles, read_image

Item = dict[str, Any]
Transform = Callable[[Item, np.random.Generator], Item]


@dataclass
class LoadedPair:
    name: str
    ir: np.ndarray  # as stored: (H, W) gray or (H, W, 3) RGB, uint8/uint16
    vis: np.ndarray


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


def flip(array: np.ndarray, flips: tuple[bool, bool]) -> np.ndarray:
    """``array`` flipped horizontally and/or vertically, contiguous."""
    if flips[0]:
        array = array[:, ::-1]
    if flips[1]:
        array = array[::-1, :]
    return np.ascontiguousarray(array)


def cut_patch(pixels: np.ndarray, top: int, left: int, size: int, flips: tuple[bool, bool]) -> np.ndarray:
    """Luma patch ``(size, size)`` float32 in [0, 1], flipped as asked."""
    return flip(luma01(pixels[top : top + size, left : left + size], np.float32), flips)


class PatchPairs(Dataset):
    """Random aligned patches of registered pairs.

    ``dataset[(pair_index, sample_seed)]`` (or a plain ``pair_index``, seed 0) returns
    ``{"ir": (1, P, P), "vis": (1, P, P), "name": str}`` with float32 luma in [0, 1], the same
    crop and flips applied to both images and to every extra plane (:meth:`add_plane`, e.g. a
    foreground ``mask``), then ``transform(item, rng)`` if given (numpy arrays ``(P, P)`` are
    turned into ``(1, P, P)`` tensors after it). ``len`` is the number of pairs.
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
        self.planes: dict[str, list[np.ndarray]] = {}

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pairs]

    def add_plane(self, key: str, arrays: Sequence[np.ndarray]) -> None:
        """Per-pair ``(H, W)`` arrays (one per pair, the pair's size) cut with the images' crop."""
        if len(arrays) != len(self.loaded):
            raise ValueError(f"plane {key!r}: {len(arrays)} arrays for {len(self.loaded)} pairs")
        for pair, array in zip(self.loaded, arrays):
            if array.shape != pair.ir.shape[:2]:
                raise PairError(f"plane {key!r} of {pair.name} is {array.shape}, the images are {pair.ir.shape[:2]}")
        self.planes[key] = [np.asarray(a, dtype=np.float32) for a in arrays]

    def __len__(self) -> int:
        return len(self.loaded)

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        index, seed = (key, 0) if isinstance(key, (int, np.integer)) else key
        index, rng = int(index), sample_rng(int(seed))
        pair, size = self.loaded[index], self.patch_size
        top, left = random_crop_box(*pair.ir.shape[:2], size, rng)
        flips = random_flips(rng, self.flips)
        item: Item = {
            "ir": cut_patch(pair.ir, top, left, size, flips),
            "vis": cut_patch(pair.vis, top, left, size, flips),
            "name": pair.name,
        }
        for name, arrays in self.planes.items():
            item[name] = flip(arrays[index][top : top + size, left : left + size], flips)
        if self.transform is not None:
            item = self.transform(item, rng)
        return {k: _as_tensor(v) for k, v in item.items()}


def _as_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor
    return value
