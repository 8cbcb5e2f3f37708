"""Choosing which pairs of a list to show or validate on: named ones, or a few spread evenly."""
from __future__ import annotations

import numpy as np


def choose_pairs(names: list[str], count: int, wanted: list[str] | None = None) -> list[str]:
    """``wanted`` names (those present) if given, else ``count`` names spread evenly over ``names``."""
    if wanted:
        return [n for n in wanted if n in names]
    if count <= 0 or not names:
        return []
    if count >= len(names):
        return list(names)
    picks = np.linspace(0, len(names) - 1, count).round().astype(int)
    return [names[i] for i in dict.fromkeys(picks.tolist())]
