"""Per-method statistics of a benchmark: means on a fair basis, the best method, mean ranks, and
paired significance tests.

A fair comparison looks at the same images: by default every statistic is taken over the
pairs that *every* method scored (the common pairs); ``basis="own"`` takes each method's own
pairs instead (the report then warns that the methods saw different images). Methods that
scored no pair at all are left out of the common set (and get NaN), so one empty result
folder does not empty the table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

from typing import TYPE_CHECKING

import numpy as np

from .. import metrics
from ..evaluation import mean_and_std

if TYPE_CHECKING:
    from .runner import BenchResult

BASES = ("common", "own")
SIGNIFICANCE_LEVEL = 0.05


@dataclass
class DatasetSummary:
    """Mean/std per method and metric, best methods per metric, and each method's mean rank.

    ``pairs`` are the images the means were taken over (the common pairs with
    ``basis="common"``); ``count`` is how many pairs each method scored; ``total`` is the
    dataset's size. ``p_values[metric][(a, b)]`` (``a`` before ``b`` in method order) is the
    two-sided Wilcoxon signed-rank p-value of methods ``a`` and ``b`` on the common pairs.
    """

    dataset: str
    methods: list[str]
    metric_names: list[str]
    mean: dict[str, dict[str, float]]  # method -> metric -> value
    std: dict[str, dict[str, float]]
    count: dict[str, int]  # pairs scored per method
    best: dict[str, set[str]]  # metric -> methods holding the best mean
    mean_rank: dict[str, float]  # method -> mean over metrics of its rank (1 = best)
    basis: str = "common"
    pairs: list[str] = field(default_factory=list)
    total: int = 0
    common: list[str] = field(default_factory=list)  # pairs every method (with any result) scored
    p_values: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)

    @property
    def counts_differ(self) -> bool:
        """True when the methods did not all score the same pairs."""
        return len(set(self.count.values())) > 1

    def p_value(self, metric: str, a: str, b: str) -> float:
        """The paired test's p-value of methods ``a`` and ``b`` on ``metric`` (symmetric)."""
        table = self.p_values.get(metric, {})
        return table.get((a, b), table.get((b, a), math.nan))


def direction(name: str) -> str:
    """``"higher"`` or ``"lower"``: which way a metric is better."""
    return metrics.metric_info(name).direction


def metric_ranks(values: dict[str, float], better: str) -> dict[str, float]:
    """Rank of each method on one metric (1 = best, ties share the average rank, NaN last)."""
    labels = list(values)
    sign = -1.0 if better == "higher" else 1.0
    keys = [sign * values[m] if math.isfinite(values[m]) else math.inf for m in labels]
    from scipy.stats import rankdata  # scipy.stats is slow to import

    return dict(zip(labels, rankdata(keys, method="average").tolist()))


def common_pairs(order: list[str], scored: dict[str, set[str]]) -> list[str]:
    """Names (in ``order``) scored by every method that scored anything."""
    present = [names for names in scored.values() if names]
    if not present:
        return []
    shared = set.intersection(*present)
    return [name for name in order if name in shared]


def paired_p_value(a: list[float], b: list[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired samples ``a`` and ``b``.

    Pairs with a non-finite value are dropped; 1.0 when every difference is zero (no evidence
    of a difference), NaN without pairs. With n pairs and no ties the smallest attainable
    value is ``2 / 2**n`` (:func:`smallest_p`), so a few pairs can never show a difference.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    differences = x[keep] - y[keep]
    if differences.size == 0:
        return math.nan
    if not np.any(differences):
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(differences, alternative="two-sided").pvalue)


def smallest_p(pairs: int) -> float:
    """The smallest two-sided p-value an exact signed-rank test can give with ``pairs`` pairs."""
    return min(1.0, 2.0 / 2.0**pairs) if pairs > 0 else math.nan


def summarise(bench: BenchResult, dataset: str, basis: str = "common") -> DatasetSummary:
    """The summary of one dataset of ``bench``; ``basis`` is ``"common"`` (default) or ``"own"``."""
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    per_method = bench.results[dataset]
    order = [p.name for p in next(d for d in bench.datasets if d.label == dataset).pairs]
    names = bench.metric_names
    labels = list(per_method)
    common = common_pairs(order, {m: set(r.values) for m, r in per_method.items()})
    rows = {
        m: [r.values[n] for n in (common if basis == "common" else order) if n in r.values]
        for m, r in per_method.items()
    }
    stats = {m: mean_and_std(rows[m], names) for m in labels}
    mean = {m: s.mean for m, s in stats.items()}
    std = {m: s.std for m, s in stats.items()}
    best, ranks = best_and_ranks(mean, names, labels)
    count = {m: len(r.values) for m, r in per_method.items()}
    p_values = {name: pairwise_p_values(per_method, common, name, labels) for name in names}
    return DatasetSummary(dataset, labels, names, mean, std, count, best, ranks, basis,
                          common if basis == "common" else order, len(order), common, p_values)


def best_and_ranks(mean: dict[str, dict[str, float]], names: list[str], labels: list[str]) -> tuple[dict[str, set[str]], dict[str, float]]:
    """Per metric the methods with the best mean; per method its mean rank over the metrics."""
    best: dict[str, set[str]] = {}
    ranks: dict[str, list[float]] = {m: [] for m in labels}
    for name in names:
        column = {m: mean[m][name] for m in labels}
        for method, rank in metric_ranks(column, direction(name)).items():
            ranks[method].append(rank)
        finite = [v for v in column.values() if math.isfinite(v)]
        top = (max(finite) if direction(name) == "higher" else min(finite)) if finite else None
        best[name] = {m for m, v in column.items() if top is not None and v == top}
    return best, {m: float(np.mean(r)) if r else math.nan for m, r in ranks.items()}


def pairwise_p_values(per_method: dict, common: list[str], metric: str, labels: list[str]) -> dict[tuple[str, str], float]:
    """Paired test of every two methods on ``metric`` over the ``common`` pairs."""
    result = {}
    for a, b in combinations(labels, 2):
        values_a, values_b = per_method[a].values, per_method[b].values
        if not all(n in values_a and n in values_b for n in common):
            result[(a, b)] = math.nan  # a method without results is not part of the common set
            continue
        result[(a, b)] = paired_p_value([values_a[n][metric] for n in common], [values_b[n][metric] for n in common])
    return result
