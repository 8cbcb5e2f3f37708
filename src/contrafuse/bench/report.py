"""Writing a benchmark's results: metrics.csv, metrics.json, report.md, report.html and figures.

The tables of report.md and report.html come from one :class:`~.summary.DatasetSummary` per
dataset, the same numbers metrics.csv holds (at full precision there, 4 decimals in the
tables). Every file is written atomically; a re-run replaces them.
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

from ..evaluation import finite_or_none
from ..io import read_image
from .grid import choose_pairs, choose_zoom, downscale, with_inset
from .runner import BenchResult
from .summary import DatasetSummary, direction, summarise
from ..atomic import write_bytes, write_text

_PACKAGES = ("contrafuse", "torch", "numpy", "scipy", "pillow", "kornia", "matplotlib", "onnxruntime")
HTML_PANEL_WIDTH = 360


@dataclass
class ReportFiles:
    """Paths of everything a report run wrote."""

    csv: Path
    json: Path
    markdown: Path
    html: Path
    figures: list[Path] = field(default_factory=list)
    assets: list[Path] = field(default_factory=list)


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


def arrow(name: str) -> str:
    """↑ for higher-is-better metrics, ↓ for lower-is-better."""
    return "↑" if direction(name) == "higher" else "↓"


# -- csv / json ---------------------------------------------------------------------------------

def metrics_csv(bench: BenchResult, summaries: dict[str, DatasetSummary]) -> str:
    """One row per (dataset, method, image), then a ``mean`` and a ``std`` row per method."""
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
            "pairs": [p.name for p in dataset.pairs],
            "best": {n: sorted(summary.best[n]) for n in bench.metric_names},
            "methods": methods,
        }
    document = {
        "convention": bench.convention,
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


def markdown_table(summary: DatasetSummary) -> list[str]:
    """The metric table of one dataset: best value per metric in bold, mean rank last."""
    header = ["Method", *(f"{n} {arrow(n)}" for n in summary.metric_names), "Mean rank ↓"]
    lines = [_md_row(header), "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    best_rank = min((r for r in summary.mean_rank.values() if math.isfinite(r)), default=math.nan)
    for method in summary.methods:
        cells = [method]
        for name in summary.metric_names:
            text = fmt(summary.mean[method][name])
            cells.append(f"**{text}**" if method in summary.best[name] else text)
        rank = fmt_rank(summary.mean_rank[method])
        cells.append(f"**{rank}**" if summary.mean_rank[method] == best_rank else rank)
        lines.append(_md_row(cells))
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


def _settings_lines(bench: BenchResult, versions: dict[str, str]) -> list[str]:
    software = ", ".join(f"{k} {v}" for k, v in versions.items())
    return [
        f"- Metric convention: `{bench.convention}` (contrafuse.metrics); ↑ higher is better, ↓ lower is better.",
        "- Table values are means over the pairs of a dataset (std in metrics.csv / metrics.json); "
        "the best mean of each metric is in **bold**.",
        "- Mean rank: each method's rank on every metric (1 = best, ties averaged), averaged over the metrics.",
        f"- Device: {bench.device}. Software: {software}.",
    ]


def markdown_report(bench: BenchResult, summaries: dict[str, DatasetSummary], versions: dict[str, str],
                    figures: dict[str, dict[str, str]]) -> str:
    """report.md: settings, then per dataset the metric table, timing, failures and figures."""
    lines = ["# Fusion benchmark", "", *_settings_lines(bench, versions), "", "Methods:", ""]
    lines += [f"- `{m.label}`: {m.describe()}" for m in bench.methods]
    for dataset in bench.datasets:
        summary = summaries[dataset.label]
        lines += ["", f"## {dataset.label}", "", f"{dataset.source}, {len(dataset.pairs)} pairs.", ""]
        lines += markdown_table(summary)
        counts = {m: summary.count[m] for m in summary.methods}
        if len(set(counts.values())) > 1:
            lines += ["", "Pairs scored per method differ: " + ", ".join(f"{m} {c}" for m, c in counts.items()) + "."]
        timing = _timing_rows(bench, dataset.label)
        if timing:
            lines += ["", "Fusion time (median seconds per pair, model and colour handling; file I/O excluded):", ""]
            lines += [_md_row(["Method", "s/pair", "Device", "Pairs timed"]), "|:---|---:|:---|---:|"]
            lines += [_md_row(list(row)) for row in timing]
        failed = [(m, n, e) for m, r in bench.results[dataset.label].items() for n, e in r.failed.items()]
        if failed:
            lines += ["", "Failures:", ""] + [f"- {m} / {n}: {e}" for m, n, e in failed]
        for caption, path in figures.get(dataset.label, {}).items():
            lines += ["", f"![{caption}]({path})"]
    return "\n".join(lines) + "\n"


# -- html ---------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table.metrics, table.timing { border-collapse: collapse; margin: 12px 0; font-size: 14px; }
table.metrics th, table.metrics td, table.timing th, table.timing td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.metrics th:first-child, table.metrics td:first-child { text-align: left; }
td.best { font-weight: bold; background: #e6f4e6; }
table.grid { border-collapse: collapse; }
table.grid td { padding: 2px; vertical-align: top; text-align: center; font-size: 12px; }
table.grid img { display: block; max-width: 360px; }
img.figure { max-width: 100%; height: auto; }
.warning { color: #a00; font-weight: bold; }
"""

# Marks images that failed to load (moved report, missing assets) visibly and in the DOM.
_IMAGE_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute("data-images-loaded", String(images.length - broken.length));
  document.body.setAttribute("data-images-broken", String(broken.length));
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


def html_table(summary: DatasetSummary) -> str:
    """The metric table of one dataset; cells carry ``data-metric`` and full-precision ``data-value``."""
    head = "".join(f'<th data-metric="{_e(n)}">{_e(n)} {arrow(n)}</th>' for n in summary.metric_names)
    rows = []
    best_rank = min((r for r in summary.mean_rank.values() if math.isfinite(r)), default=math.nan)
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
    return (f'<table class="metrics" data-dataset="{_e(summary.dataset)}"><thead><tr><th>Method</th>{head}'
            f'<th data-metric="mean_rank">Mean rank ↓</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def html_report(bench: BenchResult, summaries: dict[str, DatasetSummary], versions: dict[str, str],
                grids: dict[str, list[tuple[str, list[tuple[str, str]]]]], figures: dict[str, dict[str, str]]) -> str:
    """report.html: the tables of report.md, timing, figures and image grids with zoom insets."""
    settings = "".join(f"<li>{_e(re.sub(r'[*`]', '', line[2:]))}</li>" for line in _settings_lines(bench, versions))
    methods = "".join(f"<li><code>{_e(m.label)}</code>: {_e(m.describe())}</li>" for m in bench.methods)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>Fusion benchmark</title>',
        f"<style>{_STYLE}</style><script>{_IMAGE_CHECK}</script></head><body>",
        "<h1>Fusion benchmark</h1>", f"<ul>{settings}</ul>", f"<p>Methods:</p><ul>{methods}</ul>",
    ]
    for dataset in bench.datasets:
        label = dataset.label
        parts += [f'<section data-dataset="{_e(label)}"><h2>{_e(label)}</h2>',
                  f"<p>{_e(dataset.source)}, {len(dataset.pairs)} pairs.</p>", html_table(summaries[label])]
        timing = _timing_rows(bench, label)
        if timing:
            body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in timing)
            parts.append("<p>Fusion time (median seconds per pair; file I/O excluded):</p>"
                         f'<table class="timing"><tr><th>Method</th><th>s/pair</th><th>Device</th><th>Pairs timed</th></tr>{body}</table>')
        failed = [(m, n, e) for m, r in bench.results[label].items() for n, e in r.failed.items()]
        if failed:
            parts.append('<ul class="failures">' + "".join(f"<li>{_e(m)} / {_e(n)}: {_e(e)}</li>" for m, n, e in failed) + "</ul>")
        for caption, path in figures.get(label, {}).items():
            parts.append(f'<figure><img class="figure" src="{_e(path)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>')
        if grids.get(label):
            parts.append(_html_grid(label, grids[label]))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_grid(dataset: str, rows: list[tuple[str, list[tuple[str, str]]]]) -> str:
    titles = [title for title, _ in rows[0][1]]
    head = "<tr><th></th>" + "".join(f"<th>{_e(t)}</th>" for t in titles) + "</tr>"
    body = []
    for name, cells in rows:
        images = "".join(f'<td><img src="{_e(src)}" alt="{_e(name)} {_e(title)}" data-column="{_e(title)}"></td>'
                         for title, src in cells)
        body.append(f'<tr data-pair="{_e(name)}"><th>{_e(name)}</th>{images}</tr>')
    return (f"<h3>Results with zoomed insets</h3>"
            f'<table class="grid" data-dataset="{_e(dataset)}">{head}{"".join(body)}</table>')


# -- grids and figures --------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def grid_panels(bench: BenchResult, dataset_label: str, names: list[str]) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """Per chosen pair: IR, VIS and each method's result, all with the same zoom inset."""
    dataset = next(d for d in bench.datasets if d.label == dataset_label)
    pairs = {p.name: p for p in dataset.pairs}
    rows = []
    for name in names:
        ir, vis = read_image(pairs[name].ir), read_image(pairs[name].vis)
        box = choose_zoom(ir, vis)
        panels = [("IR", with_inset(ir, box)), ("VIS", with_inset(vis, box))]
        for label, result in bench.results[dataset_label].items():
            panels.append((label, with_inset(read_image(result.outputs[name]), box)))
        rows.append((name, panels))
    return rows


def _png_bytes(panel: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(panel).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def grid_names(bench: BenchResult, dataset_label: str, count: int, wanted: list[str] | None) -> list[str]:
    """Pairs to show: those every method has a result for, chosen by :func:`.grid.choose_pairs`."""
    dataset = next(d for d in bench.datasets if d.label == dataset_label)
    complete = [p.name for p in dataset.pairs if all(p.name in r.outputs for r in bench.results[dataset_label].values())]
    return choose_pairs(complete, count, wanted)


def write_report(
    bench: BenchResult,
    out_dir: str | Path,
    grid_count: int = 3,
    grid_pairs: list[str] | None = None,
    plots: bool = True,
) -> ReportFiles:
    """Write metrics.csv, metrics.json, report.md, report.html, the HTML grid images and figures.

    Args:
        bench: results of :func:`.runner.run_bench`.
        out_dir: the benchmark's output folder.
        grid_count: pairs per dataset shown in the image grids (spread over the dataset).
        grid_pairs: pair names to show instead (those missing from a dataset are skipped).
        plots: draw the matplotlib figures (box plots and grid, PNG + PDF) into ``figures/``.
    """
    out_dir = Path(out_dir)
    versions = software_versions()
    summaries = {d.label: summarise(bench, d.label) for d in bench.datasets}
    figures: dict[str, dict[str, str]] = {}
    html_grids: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {}
    files = ReportFiles(out_dir / "metrics.csv", out_dir / "metrics.json", out_dir / "report.md", out_dir / "report.html")
    for dataset in bench.datasets:
        label = dataset.label
        rows = grid_panels(bench, label, grid_names(bench, label, grid_count, grid_pairs))
        html_grids[label] = []
        for name, panels in rows:
            cells = []
            for title, panel in panels:
                relative = Path("assets") / _safe(label) / _safe(name) / f"{_safe(title)}.png"
                files.assets.append(write_bytes(out_dir / relative, _png_bytes(downscale(panel, HTML_PANEL_WIDTH)), overwrite=True))
                cells.append((title, relative.as_posix()))
            html_grids[label].append((name, cells))
        if plots:
            figures[label] = _draw_figures(bench, label, rows, out_dir, files)
    write_text(files.csv, metrics_csv(bench, summaries), overwrite=True)
    write_text(files.json, metrics_json(bench, summaries, versions), overwrite=True)
    write_text(files.markdown, markdown_report(bench, summaries, versions, figures), overwrite=True)
    write_text(files.html, html_report(bench, summaries, versions, html_grids, figures), overwrite=True)
    return files


def _draw_figures(bench: BenchResult, label: str, rows: list, out_dir: Path, files: ReportFiles) -> dict[str, str]:
    from . import plots

    shown: dict[str, str] = {}
    base = out_dir / "figures" / f"{_safe(label)}_boxplots"
    values = {m: r.values for m, r in bench.results[label].items()}
    files.figures += plots.box_plots(values, bench.metric_names, base, title=f"{label} ({bench.convention} convention)")
    shown["Per-image metric values (box plots, ▲ = mean)"] = f"figures/{base.name}.png"
    if rows:
        base = out_dir / "figures" / f"{_safe(label)}_grid"
        files.figures += plots.image_grid(rows, base)
        shown["Sources and results with zoomed insets"] = f"figures/{base.name}.png"
    return shown
