"""Per-step learning-rate factors that survive a checkpoint (LambdaLR keeps callable objects' state)."""
from __future__ import annotations

import bisect


class WarmupMultiStep:
    """lr factor at step s: min(1, (s + 1) / warmup) x gamma ** (number of milestones <= s).

    ``milestones`` are step numbers. ``warmup = 0`` disables the linear warm-up. With
    ``warmup = 0`` this is MultiStepLR stepped once per optimisation step.

    ``delay``: the factor is 0 for the first ``delay`` steps (the network holds still) and the
    warm-up starts after them: min(1, (s - delay + 1) / warmup).
    """

    def __init__(self, milestones: list[int], gamma: float, warmup: int = 0, delay: int = 0) -> None:
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.warmup = int(warmup)
        self.delay = int(delay)

    def __call__(self, step: int) -> float:
        if step < self.delay:
            return 0.0
        factor = self.gamma ** bisect.bisect_right(self.milestones, step)
        since = step - self.delay
        if self.warmup > 0 and since < self.warmup:
            factor *= (since + 1) / self.warmup
        return factor


def fraction_milestones(fractions: list[float], total_steps: int) -> list[int]:
    """Milestones given as fractions of the run (0.25 -> 25 % of ``total_steps``) in steps."""
    return [int(round(f * total_steps)) for f in fractions]
