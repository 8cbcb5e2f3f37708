"""The wording and number formats of a benchmark's report, shared by report.md, report.html and
metrics.json: which pairs the statistics cover, the scales of a convention, the paired tests, the
settings and the timing rows."""
from __future__ import annotations

import math

from .grid import InsetChoice
from .runner import BenchResult
from .summary import SIGNIFICANCE_LEVEL, DatasetSummary, direction, smallest_p

TEST_NAME = "two-sided Wilcoxon signed-rank test, paired by image"

# What the numbers of each convention mean where the scale is not obvious (docs/metrics.md).
CONVENTION_NOTES: dict[str, dict[str, str]] = {
    "cddfuse": {
        "SSIM": "SSIM is ssim(F, IR) + ssim(F, VIS), summed over the two sources: it runs from 0 to 2, so values above 1 are normal",
        "MI": "MI is MI(F, IR) + MI(F, VIS) in nats",
        "VIF": "VIF is vifp(IR, F) + vifp(VIS, F), a sum over the two sources",
        "SCD": "SCD is r(F - VIS, IR) + r(F - IR, VIS), a sum (up to 2)",
        "PSNR": "PSNR is 10 log10(max(F)^2 / MSE) with MSE on the 0-255 scale (about 10-18 dB)",
        "MSE": "MSE is in 0-255 units (about 10^3)",
        "SF": "SD, SF and AG are on the 0-255 scale",
    },
    "matlab": {
        "SSIM": "SSIM is the mean of ssim(F, IR) and ssim(F, VIS): it runs from 0 to 1",
        "MI": "MI is MI(F, IR) + MI(F, VIS) in bits (the cddfuse value / ln 2)",
        "VIF": "VIF is vifp(IR, F) + vifp(VIS, F), a sum over the two sources",
        "SCD": "SCD is r(F - VIS, IR) + r(F - IR, VIS), a sum (up to 2)",
        "PSNR": "PSNR is 20 log10(255 / sqrt(MSE of [0, 1] images)), mixed scales (about 55-68 dB)",
        "MSE": "MSE is of [0, 1] images (the cddfuse value / 255^2)",
        "SF": "SF is of [0, 1] images (the cddfuse value / 255); SD and AG are on the 0-255 scale",
    },
}


def fmt(value: float) -> str:
    """A table cell: 4 decimals, or 4 significant digits below 0.1 (``nan`` for a missing value)."""
    if not math.isfinite(value):
        return "nan"
    return f"{value:.4f}" if value == 0 or abs(value) >= 0.1 else f"{value:.4g}"


def fmt_rank(rank: float) -> str:
    """A mean rank: 2 decimals."""
    return f"{rank:.2f}" if math.isfinite(rank) else "nan"


def fmt_p(p: float) -> str:
    """A p-value: 3 significant digits, ``*`` below the significance level, ``n/a`` when missing."""
    if not math.isfinite(p):
        return "n/a"
    text = f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"
    return text + ("*" if p < SIGNIFICANCE_LEVEL else "")


def arrow(name: str) -> str:
    """↑ for higher-is-better metrics, ↓ for lower-is-better."""
    return "↑" if direction(name) == "higher" else "↓"


def pairs_note(summary: DatasetSummary) -> str:
    """Which pairs the means and ranks are taken over, and which methods lack some."""
    n, total = len(summary.pairs), summary.total
    if not summary.counts_differ:
        return f"Means and ranks over all {n} pairs of every method."
    short = ", ".join(f"{m} {summary.count[m]}" for m in summary.methods if summary.count[m] < total)
    if summary.basis == "own":
        return (f"Warning: each method is averaged over its own pairs (--rank-pairs own), and they differ "
                f"(pairs scored: {short}, of {total}): the methods are not compared on the same images.")
    empty = [m for m in summary.methods if summary.count[m] == 0]
    left_out = f" {', '.join(empty)} scored no pair and {'is' if len(empty) == 1 else 'are'} not ranked." if empty else ""
    return (f"Ranked on the {n} pairs every method has (of {total}; pairs scored: {short}); "
            f"the other pairs are left out of means, ranks and tests.{left_out}")


def convention_note(convention: str, names: list[str]) -> str:
    """The scales of this convention for the metrics shown, one sentence each."""
    notes = CONVENTION_NOTES.get(convention, {})
    keys = dict.fromkeys("SF" if n in ("SD", "SF", "AG") else n for n in names)  # one sentence covers SD, SF, AG
    shown = [notes[k] for k in keys if k in notes]
    if not shown:
        return ""
    return (f"Scales (`{convention}` convention): " + "; ".join(shown) + ". Numbers from the other convention "
            "are not comparable (docs/metrics.md).")


def significance_rows(summary: DatasetSummary) -> list[tuple[str, list[str]]]:
    """Per method, the p-value against the best method of each metric ("best" for the best)."""
    rows = []
    for method in summary.methods:
        cells = []
        for name in summary.metric_names:
            best = [m for m in summary.methods if m in summary.best[name]]
            if not best:
                cells.append("n/a")
            elif method in best:
                cells.append("best")
            else:
                cells.append(fmt_p(summary.p_value(name, method, best[0])))
        rows.append((method, cells))
    return rows


def significance_note(summary: DatasetSummary) -> str:
    """What the p-value table is, and what it cannot show with few pairs."""
    n = len(summary.common)
    comparisons = (len(summary.methods) - 1) * len(summary.metric_names)
    text = (f"Paired tests: p-value of each method against the best mean of each metric ({TEST_NAME}, over the "
            f"{n} pairs every method has); * marks p < {SIGNIFICANCE_LEVEL}. Not corrected for the {comparisons} comparisons.")
    floor = smallest_p(n)
    if math.isfinite(floor) and floor >= SIGNIFICANCE_LEVEL:
        text += f" With {n} pairs the smallest attainable p is {floor:.3g}: no difference can reach {SIGNIFICANCE_LEVEL}."
    return text


def timing_rows(bench: BenchResult, dataset: str) -> list[tuple[str, str, str, str]]:
    """``(method, s/pair, device, pairs timed)`` of each model method of ``dataset``."""
    rows = []
    for label, result in bench.results[dataset].items():
        timing = result.timing
        if timing is None:
            continue
        note = f"{len(timing.seconds)}" + (f" ({timing.reused} from an earlier run)" if timing.reused else "")
        rows.append((label, f"{timing.per_pair:.4f}" if math.isfinite(timing.per_pair) else "n/a", timing.device, note))
    return rows


def settings_lines(bench: BenchResult, versions: dict[str, str], insets: InsetChoice) -> list[str]:
    """The settings the report states, one line each (markdown formatting)."""
    software = ", ".join(f"{k} {v}" for k, v in versions.items())
    return [
        f"Metric convention: `{bench.convention}` (contrafuse.metrics); ↑ higher is better, ↓ lower is better.",
        "Table values are means over the pairs stated under each table (std in metrics.csv / metrics.json); "
        "the best mean of each metric is in **bold**.",
        "Mean rank: each method's rank on every metric (1 = best, ties averaged), averaged over the metrics.",
        f"Zoomed insets: {insets.describe()}.",
        f"Device: {bench.device}. Software: {software}.",
    ]
