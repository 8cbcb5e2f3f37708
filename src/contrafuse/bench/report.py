"""Writing a benchmark's results: metrics.csv, metrics.json, report.md, report.html and figures.

The tables of report.md and report.html come from one :class:`~.summary.DatasetSummary` per
dataset, the same numbers metrics.csv holds (at full precision there, 4 decimals in the
tables). Means and ranks are taken over the pairs every method has, unless the caller asks
for each method's own pairs; paired p-values compare the methods image by image. Every file
is written atomically; a re-run replaces them.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import platform
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import write_bytes, write_text
from ..errors import ContrafuseError
from ..evaluation import finite_or_none
from ..data.selection import choose_pairs
from ..io import read_image
from ..panels import downscale
from ..thermal import for_display
from .grid import InsetChoice, with_inset
from .runner import BenchResult
from .summary import SIGNIFICANCE_LEVEL, DatasetSummary, direction, smallest_p, summarise

_PACKAGES = ("contrafuse", "torch", "numpy", "scipy", "pillow", "kornia", "matplotlib", "onnxruntime")
HTML_PANEL_WIDTH = 480
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


@dataclass
class ReportFiles:
    """Paths of everything a report run wrote."""

    csv: Path
    json: Path
    markdown: Path
    html: Path
    figures: list[Path] = field(default_factory=list)
    assets: list[Path] = field(default_factory=list)


@dataclass
class Figures:
    """The figures of one dataset, relative to the output folder (None when not drawn)."""

    boxplots: str | None = None
    grid: str | None = None


def software_versions() -> dict[str, str]:
    """Versions of Python and of the packages the numbers depend on (installed ones only)."""
    versions = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


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


# -- notes shared by both reports -----------------------------------------------------------------

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


# -- csv / json ---------------------------------------------------------------------------------

def metrics_csv(bench: BenchResult, summaries: dict[str, DatasetSummary]) -> str:
    """One row per (dataset, method, image), then a ``mean`` and a ``std`` row per method (the table's basis)."""
    names = bench.metric_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "method", "row", "image", "convention", *names])
    for dataset, per_method in bench.results.items():
        summary = summaries[dataset]
        for label, result in per_method.items():
            for image, values in result.values.items():
                writer.writerow([dataset, label, "image", image, bench.convention, *(repr(values[n]) for n in names)])
            for row, stats in (("mean", summary.mean[label]), ("std", summary.std[label])):
                writer.writerow([dataset, label, row, "", bench.convention, *(repr(stats[n]) for n in names)])
    return buffer.getvalue()


def _p_table(summary: DatasetSummary) -> dict[str, dict[str, float | None]]:
    return {name: {f"{a} vs {b}": finite_or_none(p) for (a, b), p in table.items()}
            for name, table in summary.p_values.items()}


def metrics_json(bench: BenchResult, summaries: dict[str, DatasetSummary], versions: dict[str, str]) -> str:
    """Everything the report shows, as JSON (NaN written as null)."""
    datasets = {}
    for dataset in bench.datasets:
        summary = summaries[dataset.label]
        methods = {}
        for label, result in bench.results[dataset.label].items():
            timing = result.timing
            methods[label] = {
                "images": {k: {n: finite_or_none(v) for n, v in row.items()} for k, row in result.values.items()},
                "mean": {n: finite_or_none(v) for n, v in summary.mean[label].items()},
                "std": {n: finite_or_none(v) for n, v in summary.std[label].items()},
                "count": summary.count[label],
                "mean_rank": finite_or_none(summary.mean_rank[label]),
                "failed": result.failed,
                "timing": None if timing is None else {
                    "seconds_per_pair": finite_or_none(timing.per_pair), "statistic": "median",
                    "device": timing.device, "pairs_timed": len(timing.seconds), "reused": timing.reused,
                },
            }
        datasets[dataset.label] = {
            "source": dataset.source,
            "modalities": {"ir": dataset.modalities[0], "vis": dataset.modalities[1]},
            "pairs": [p.name for p in dataset.pairs],
            "ranking": {"basis": summary.basis, "pairs": summary.pairs, "note": pairs_note(summary)},
            "best": {n: sorted(summary.best[n]) for n in bench.metric_names},
            "significance": {"test": TEST_NAME, "pairs": summary.common, "level": SIGNIFICANCE_LEVEL,
                             "p_values": _p_table(summary)},
            "methods": methods,
        }
    document = {
        "convention": bench.convention,
        "convention_note": convention_note(bench.convention, bench.metric_names),
        "metrics": bench.metric_names,
        "directions": {n: direction(n) for n in bench.metric_names},
        "device": bench.device,
        "versions": versions,
        "methods": {m.label: {"kind": m.kind, "description": m.describe()} for m in bench.methods},
        "datasets": datasets,
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


# -- markdown -----------------------------------------------------------------------------------

def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _best_rank(summary: DatasetSummary) -> float:
    return min((r for r in summary.mean_rank.values() if math.isfinite(r)), default=math.nan)


def markdown_table(summary: DatasetSummary) -> list[str]:
    """The metric table of one dataset: best value per metric in bold, mean rank last."""
    header = ["Method", *(f"{n} {arrow(n)}" for n in summary.metric_names), "Mean rank ↓"]
    lines = [_md_row(header), "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    best_rank = _best_rank(summary)
    for method in summary.methods:
        cells = [method]
        for name in summary.metric_names:
            text = fmt(summary.mean[method][name])
            cells.append(f"**{text}**" if method in summary.best[name] else text)
        rank = fmt_rank(summary.mean_rank[method])
        cells.append(f"**{rank}**" if summary.mean_rank[method] == best_rank else rank)
        lines.append(_md_row(cells))
    return lines


def markdown_significance(summary: DatasetSummary) -> list[str]:
    """The p-value table (same layout as the metric table) and its note."""
    if len(summary.methods) < 2:
        return []
    header = ["Method", *summary.metric_names]
    lines = [significance_note(summary), "", _md_row(header), "|" + "|".join([":---"] + ["---:"] * len(summary.metric_names)) + "|"]
    lines += [_md_row([method, *cells]) for method, cells in significance_rows(summary)]
    return lines


def _timing_rows(bench: BenchResult, dataset: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for label, result in bench.results[dataset].items():
        timing = result.timing
        if timing is None:
            continue
        note = f"{len(timing.seconds)}" + (f" ({timing.reused} from an earlier run)" if timing.reused else "")
        rows.append((label, f"{timing.per_pair:.4f}" if math.isfinite(timing.per_pair) else "n/a", timing.device, note))
    return rows


def _settings_lines(bench: BenchResult, versions: dict[str, str], insets: InsetChoice) -> list[str]:
    software = ", ".join(f"{k} {v}" for k, v in versions.items())
    return [
        f"- Metric convention: `{bench.convention}` (contrafuse.metrics); ↑ higher is better, ↓ lower is better.",
        "- Table values are means over the pairs stated under each table (std in metrics.csv / metrics.json); "
        "the best mean of each metric is in **bold**.",
        "- Mean rank: each method's rank on every metric (1 = best, ties averaged), averaged over the metrics.",
        f"- Zoomed insets: {insets.describe()}.",
        f"- Device: {bench.device}. Software: {software}.",
    ]


def markdown_report(bench: BenchResult, summaries: dict[str, DatasetSummary], versions: dict[str, str],
                    figures: dict[str, Figures], insets: InsetChoice) -> str:
    """report.md: settings, then per dataset the metric table and its notes, p-values, timing, failures, figures."""
    lines = ["# Fusion benchmark", "", *_settings_lines(bench, versions, insets), "", "Methods:", ""]
    lines += [f"- `{m.label}`: {m.describe()}" for m in bench.methods]
    for dataset in bench.datasets:
        summary = summaries[dataset.label]
        lines += ["", f"## {dataset.label}", "", f"{dataset.source}, {len(dataset.pairs)} pairs.", ""]
        lines += markdown_table(summary)
        lines += ["", pairs_note(summary)]
        note = convention_note(bench.convention, summary.metric_names)
        if note:
            lines += ["", note]
        significance = markdown_significance(summary)
        if significance:
            lines += ["", *significance]
        timing = _timing_rows(bench, dataset.label)
        if timing:
            lines += ["", "Fusion time (median seconds per pair, model and colour handling; file I/O excluded):", ""]
            lines += [_md_row(["Method", "s/pair", "Device", "Pairs timed"]), "|:---|---:|:---|---:|"]
            lines += [_md_row(list(row)) for row in timing]
        failed = [(m, n, e) for m, r in bench.results[dataset.label].items() for n, e in r.failed.items()]
        if failed:
            lines += ["", "Failures:", ""] + [f"- {m} / {n}: {e}" for m, n, e in failed]
        shown = figures.get(dataset.label, Figures())
        if shown.boxplots:
            lines += ["", f"![Per-image metric values (box plots, ▲ = mean)]({shown.boxplots})"]
        if shown.grid:
            lines += ["", f"![Sources and results with zoomed insets]({shown.grid})"]
    return "\n".join(lines) + "\n"


# -- html ---------------------------------------------------------------------------------------

# Sized for a 1400 px page: tables wrap in a scroll box rather than widening the page, the
# image grid divides the page width between its columns, and long paths break anywhere.
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 100%; }
li, p, figcaption { overflow-wrap: anywhere; }
.scroll { max-width: 100%; overflow-x: auto; }
table.metrics, table.timing, table.pvalues { border-collapse: collapse; margin: 12px 0; font-size: 13px; }
table.metrics th, table.metrics td, table.timing th, table.timing td, table.pvalues th, table.pvalues td {
  border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
table.metrics th:first-child, table.metrics td:first-child, table.pvalues td:first-child { text-align: left; }
td.best { font-weight: bold; background: #e6f4e6; }
td.significant { background: #fdf1dc; }
p.note { font-size: 13px; color: #444; max-width: 1100px; }
table.grid { border-collapse: collapse; width: 100%; table-layout: fixed; }
table.grid col.name { width: 7em; }
table.grid th { font-size: 12px; font-weight: normal; overflow-wrap: anywhere; padding: 2px; }
table.grid td { padding: 2px; vertical-align: top; }
table.grid img { display: block; width: 100%; height: auto; max-height: 70vh; object-fit: contain; }
img.figure { max-width: 100%; height: auto; }
.warning { color: #a00; font-weight: bold; }
"""

# Marks images that failed to load (moved report, missing assets) visibly and in the DOM, and
# records the page's width against the window's, so a layout that overflows is measurable.
_PAGE_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute("data-images-loaded", String(images.length - broken.length));
  document.body.setAttribute("data-images-broken", String(broken.length));
  document.body.setAttribute("data-page-width", String(document.documentElement.scrollWidth));
  document.body.setAttribute("data-window-width", String(document.documentElement.clientWidth));
  if (broken.length) {
    var note = document.createElement("p");
    note.className = "warning";
    note.textContent = broken.length + " image(s) could not be loaded: " +
      broken.map(function (i) { return i.getAttribute("src"); }).join(", ");
    document.body.insertBefore(note, document.body.firstChild);
  }
});
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _inline_md(text: str) -> str:
    """Escaped text with `code` spans (the notes are shared with report.md)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def html_table(summary: DatasetSummary) -> str:
    """The metric table of one dataset; cells carry ``data-metric`` and full-precision ``data-value``."""
    head = "".join(f'<th data-metric="{_e(n)}">{_e(n)} {arrow(n)}</th>' for n in summary.metric_names)
    rows = []
    best_rank = _best_rank(summary)
    for method in summary.methods:
        cells = [f"<td>{_e(method)}</td>"]
        for name in summary.metric_names:
            value = summary.mean[method][name]
            best = method in summary.best[name]
            text = f"<strong>{fmt(value)}</strong>" if best else fmt(value)
            cls = ' class="best"' if best else ""
            cells.append(f'<td data-metric="{_e(name)}" data-value="{value!r}"{cls}>{text}</td>')
        rank = summary.mean_rank[method]
        cls = ' class="best"' if rank == best_rank else ""
        cells.append(f'<td data-metric="mean_rank" data-value="{rank!r}"{cls}>{fmt_rank(rank)}</td>')
        rows.append(f'<tr data-method="{_e(method)}">{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="metrics" data-dataset="{_e(summary.dataset)}" data-pairs="{len(summary.pairs)}">'
            f'<thead><tr><th>Method</th>{head}<th data-metric="mean_rank">Mean rank ↓</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def html_significance(summary: DatasetSummary) -> str:
    """The p-value table; cells carry ``data-p-metric`` and ``data-p`` (against that metric's best)."""
    if len(summary.methods) < 2:
        return ""
    head = "".join(f"<th>{_e(n)}</th>" for n in summary.metric_names)
    rows = []
    for method, cells in significance_rows(summary):
        tds = []
        for name, text in zip(summary.metric_names, cells):
            cls = ' class="best"' if text == "best" else (' class="significant"' if text.endswith("*") else "")
            tds.append(f'<td data-p-metric="{_e(name)}" data-p="{_e(text)}"{cls}>{_e(text)}</td>')
        rows.append(f'<tr data-method="{_e(method)}"><td>{_e(method)}</td>{"".join(tds)}</tr>')
    return (f'<p class="note">{_inline_md(significance_note(summary))}</p><div class="scroll">'
            f'<table class="pvalues" data-dataset="{_e(summary.dataset)}"><thead><tr><th>Method</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def html_report(bench: BenchResult, summaries: dict[str, DatasetSummary], versions: dict[str, str],
                grids: dict[str, list[tuple[str, list[tuple[str, str]]]]], figures: dict[str, Figures],
                insets: InsetChoice) -> str:
    """report.html: the tables and notes of report.md, timing, box plots and image grids with zoom insets."""
    settings = "".join(f"<li>{_e(re.sub(r'[*`]', '', line[2:]))}</li>" for line in _settings_lines(bench, versions, insets))
    methods = "".join(f"<li><code>{_e(m.label)}</code>: {_e(m.describe())}</li>" for m in bench.methods)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>Fusion benchmark</title>',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{_STYLE}</style><script>{_PAGE_CHECK}</script></head><body>",
        "<h1>Fusion benchmark</h1>", f"<ul>{settings}</ul>", f"<p>Methods:</p><ul>{methods}</ul>",
    ]
    for dataset in bench.datasets:
        label = dataset.label
        summary = summaries[label]
        parts += [f'<section data-dataset="{_e(label)}"><h2>{_e(label)}</h2>',
                  f"<p>{_e(dataset.source)}, {len(dataset.pairs)} pairs.</p>", html_table(summary),
                  f'<p class="note" data-role="pairs">{_inline_md(pairs_note(summary))}</p>']
        note = convention_note(bench.convention, summary.metric_names)
        if note:
            parts.append(f'<p class="note" data-role="convention">{_inline_md(note)}</p>')
        parts.append(html_significance(summary))
        timing = _timing_rows(bench, label)
        if timing:
            body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in timing)
            parts.append("<p>Fusion time (median seconds per pair; file I/O excluded):</p>"
                         f'<table class="timing"><tr><th>Method</th><th>s/pair</th><th>Device</th><th>Pairs timed</th></tr>{body}</table>')
        failed = [(m, n, e) for m, r in bench.results[label].items() for n, e in r.failed.items()]
        if failed:
            parts.append('<ul class="failures">' + "".join(f"<li>{_e(m)} / {_e(n)}: {_e(e)}</li>" for m, n, e in failed) + "</ul>")
        shown = figures.get(label, Figures())
        if shown.boxplots:
            caption = "Per-image metric values (box plots, ▲ = mean)"
            parts.append(f'<figure><img class="figure" src="{_e(shown.boxplots)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>')
        if grids.get(label):
            parts.append(_html_grid(label, grids[label], shown.grid))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_grid(dataset: str, rows: list[tuple[str, list[tuple[str, str]]]], paper_figure: str | None) -> str:
    titles = [title for title, _ in rows[0][1]]
    columns = f'<colgroup><col class="name"><col span="{len(titles)}"></colgroup>'
    head = "<thead><tr><th></th>" + "".join(f"<th>{_e(t)}</th>" for t in titles) + "</tr></thead>"
    body = []
    for name, cells in rows:
        images = "".join(f'<td><img src="{_e(src)}" alt="{_e(name)} {_e(title)}" data-column="{_e(title)}"></td>'
                         for title, src in cells)
        body.append(f'<tr data-pair="{_e(name)}"><th>{_e(name)}</th>{images}</tr>')
    link = ""
    if paper_figure:
        pdf = Path(paper_figure).with_suffix(".pdf").as_posix()
        link = f' <small>(the same grid for a paper: <a href="{_e(paper_figure)}">PNG</a>, <a href="{_e(pdf)}">PDF</a>)</small>'
    return (f"<h3>Results with zoomed insets{link}</h3>"
            f'<table class="grid" data-dataset="{_e(dataset)}">{columns}{head}<tbody>{"".join(body)}</tbody></table>')


# -- grids and figures --------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def grid_panels(bench: BenchResult, dataset_label: str, names: list[str],
                insets: InsetChoice | None = None) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """Per chosen pair: the two sources (titled with the dataset's modalities) and each method's
    result, all with the same zoom inset."""
    insets = insets or InsetChoice()
    dataset = next(d for d in bench.datasets if d.label == dataset_label)
    pairs = {p.name: p for p in dataset.pairs}
    ir_title, vis_title = dataset.modalities
    rows = []
    for name in names:
        ir, vis = for_display(read_image(pairs[name].ir), bench.ir_range), read_image(pairs[name].vis)
        box = insets.box_for(name, ir, vis)
        panels = [(ir_title, with_inset(ir, box)), (vis_title, with_inset(vis, box))]
        for label, result in bench.results[dataset_label].items():
            panels.append((label, with_inset(read_image(result.outputs[name]), box)))
        rows.append((name, panels))
    return rows


def _png_bytes(panel: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(panel).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def grid_names(bench: BenchResult, dataset_label: str, count: int, wanted: list[str] | None) -> list[str]:
    """Pairs to show: those every method has a result for, chosen by :func:`~contrafuse.data.selection.choose_pairs`."""
    dataset = next(d for d in bench.datasets if d.label == dataset_label)
    complete = [p.name for p in dataset.pairs if all(p.name in r.outputs for r in bench.results[dataset_label].values())]
    return choose_pairs(complete, count, wanted)


def write_report(
    bench: BenchResult,
    out_dir: str | Path,
    grid_count: int = 3,
    grid_pairs: list[str] | None = None,
    plots: bool = True,
    insets: InsetChoice | None = None,
    basis: str = "common",
) -> ReportFiles:
    """Write metrics.csv, metrics.json, report.md, report.html, the HTML grid images and figures.

    Args:
        bench: results of :func:`.runner.run_bench`.
        out_dir: the benchmark's output folder.
        grid_count: pairs per dataset shown in the image grids (spread over the dataset).
        grid_pairs: pair names to show instead (those missing from a dataset are skipped).
        plots: draw the matplotlib figures (box plots and grid, PNG + PDF) into ``figures/``;
            without matplotlib this is an error raised before anything is written.
        insets: where the zoom boxes go (default: on the infrared target).
        basis: ``"common"`` (means and ranks over the pairs every method has) or ``"own"``.
    """
    from . import plots as plotting

    if plots and not plotting.available():
        raise ContrafuseError(plotting.MISSING_MATPLOTLIB)
    insets = insets or InsetChoice()
    out_dir = Path(out_dir)
    versions = software_versions()
    summaries = {d.label: summarise(bench, d.label, basis) for d in bench.datasets}
    figures: dict[str, Figures] = {}
    html_grids: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {}
    files = ReportFiles(out_dir / "metrics.csv", out_dir / "metrics.json", out_dir / "report.md", out_dir / "report.html")
    for dataset in bench.datasets:
        label = dataset.label
        rows = grid_panels(bench, label, grid_names(bench, label, grid_count, grid_pairs), insets)
        html_grids[label] = []
        for name, panels in rows:
            cells = []
            for index, (title, panel) in enumerate(panels):
                relative = Path("assets") / _safe(label) / _safe(name) / f"{index:02d}_{_safe(title)}.png"
                files.assets.append(write_bytes(out_dir / relative, _png_bytes(downscale(panel, HTML_PANEL_WIDTH)), overwrite=True))
                cells.append((title, relative.as_posix()))
            html_grids[label].append((name, cells))
        if plots:
            figures[label] = _draw_figures(bench, label, rows, out_dir, files)
    write_text(files.csv, metrics_csv(bench, summaries), overwrite=True)
    write_text(files.json, metrics_json(bench, summaries, versions), overwrite=True)
    write_text(files.markdown, markdown_report(bench, summaries, versions, figures, insets), overwrite=True)
    write_text(files.html, html_report(bench, summaries, versions, html_grids, figures, insets), overwrite=True)
    return files


def _draw_figures(bench: BenchResult, label: str, rows: list, out_dir: Path, files: ReportFiles) -> Figures:
    from . import plots

    shown = Figures()
    base = out_dir / "figures" / f"{_safe(label)}_boxplots"
    values = {m: r.values for m, r in bench.results[label].items()}
    files.figures += plots.box_plots(values, bench.metric_names, base, title=f"{label} ({bench.convention} convention)")
    shown.boxplots = f"figures/{base.name}.png"
    if rows:
        base = out_dir / "figures" / f"{_safe(label)}_grid"
        files.figures += plots.image_grid(rows, base)
        shown.grid = f"figures/{base.name}.png"
    return shown
