"""The sample stream: which pair and which seed every sample of a run gets, by position alone.

Global sample number ``k`` (0, 1, 2, ...) is pair ``perm_e[k mod n]`` of epoch ``e = k // n``,
with ``perm_e`` a permutation seeded by (seed, e), and gets the augmentation seed derived from
(seed, k). Step ``s`` of a run with per-process batch ``b`` and ``W`` processes uses samples
``s*b*W .. (s+1)*b*W - 1``; process ``r`` takes the ``r``-th block of ``b``. So the data of a
step depend only on (seed, step, global batch), not on the world size or on resumes: a
resumed run restarts the stream at its step, and one process with batch ``b*W`` sees the
same samples as ``W`` processes with batch ``b``.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

_SEED_STRIDE = 1 << 40


class SampleStream(Sampler):
    """Infinite sampler of ``(pair_index, sample_seed)`` keys for one process (module doc)."""

    def __init__(self, num_pairs: int, seed: int, batch_size: int, rank: int = 0, world_size: int = 1, start_step: int = 0):
        if num_pairs < 1:
            raise ValueError("the dataset is empty")
        self.num_pairs = num_pairs
        self.seed = int(seed)
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self._permutations: dict[int, np.ndarray] = {}

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            self._permutations = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.num_pairs)}
        return self._permutations[epoch]

    def key(self, sample: int) -> tuple[int, int]:
        """The ``(pair_index, sample_seed)`` of global sample number ``sample``."""
        epoch, position = divmod(sample, self.num_pairs)
        return int(self.permutation(epoch)[position]), self.seed * _SEED_STRIDE + sample

    def samples_of_step(self, step: int) -> range:
        first = step * self.global_batch + self.rank * self.batch_size
        return range(first, first + self.batch_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        while True:
            for sample in self.samples_of_step(step):
                yield self.key(sample)
            step += 1

    def __len__(self) -> int:  # an infinite stream; DataLoader only needs a number
        return 2**62
