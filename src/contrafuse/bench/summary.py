"""Per-method statistics of a benchmark: mean and std per metric, the best method, mean ranks."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from .. import metrics
from ..evaluation import mean_and_std
from .runner import BenchResult


@dataclass
class DatasetSummary:
    """Mean/std per method and metric, best methods per metric, and each method's mean rank."""

    dataset: str
    methods: list[str]
    metric_names: list[str]
    mean: dict[str, dict[str, float]]  # method -> metric -> value
    std: dict[str, dict[str, float]]
    count: dict[str, int]  # pairs scored per method
    best: dict[str, set[str]]  # metric -> methods holding the best mean
    mean_rank: dict[str, float]  # method -> mean over metrics of its rank (1 = best)


def direction(name: str) -> str:
    """``"higher"`` or ``"lower"``: which way a metric is better."""
    return metrics.metric_info(name).direction


def metric_ranks(values: dict[str, float], better: str) -> dict[str, float]:
    """Rank of each method on one metric (1 = best, ties share the average rank, NaN last)."""
    labels = list(values)
    sign = -1.0 if better == "higher" else 1.0
    keys = [sign * values[m] if math.isfinite(values[m]) else math.inf for m in labels]
    return dict(zip(labels, rankdata(keys, method="average").tolist()))


def summarise(bench: BenchResult, dataset: str) -> DatasetSummary:
    """The summary of one dataset of ``bench``."""
    per_method = bench.results[dataset]
    names = bench.metric_names
    labels = list(per_method)
    stats = {label: mean_and_std(result.values.values(), names) for label, result in per_method.items()}
    mean = {label: s.mean for label, s in stats.items()}
    std = {label: s.std for label, s in stats.items()}
    best: dict[str, set[str]] = {}
    ranks: dict[str, list[float]] = {m: [] for m in labels}
    for name in names:
        column = {m: mean[m][name] for m in labels}
        for method, rank in metric_ranks(column, direction(name)).items():
            ranks[method].append(rank)
        finite = [v for v in column.values() if math.isfinite(v)]
        if finite:
            top = max(finite) if direction(name) == "higher" else min(finite)
            best[name] = {m for m, v in column.items() if v == top}
        else:
            best[name] = set()
    mean_rank = {m: float(np.mean(r)) if r else float("nan") for m, r in ranks.items()}
    count = {label: s.count for label, s in stats.items()}
    return DatasetSummary(dataset, labels, names, mean, std, count, best, mean_rank)
