"""Writing a benchmark's results: metrics.csv, metrics.json, report.md, report.html and figures.

report.md and report.html are two renderings of one document (:mod:`.document`). Their tables
come from one :class:`~.summary.DatasetSummary` per dataset, the same numbers metrics.csv holds
(at full precision there, 4 decimals in the tables). Means and ranks are taken over the pairs every method has, unless the caller asks
for each method's own pairs; paired p-values compare the methods image by image. Every file
is written atomically; a re-run replaces them.
"""
from __future__ import annotations

import csv
import io
import json
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
from .document import Figures, render_html, render_markdown, report_document
from .grid import InsetChoice, with_inset
from .notes import TEST_NAME, convention_note, pairs_note
from .runner import BenchResult
from .summary import SIGNIFICANCE_LEVEL, DatasetSummary, direction, summarise

_PACKAGES = ("contrafuse", "torch", "numpy", "scipy", "pillow", "kornia", "matplotlib", "onnxruntime")
HTML_PANEL_WIDTH = 480


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
    document = report_document(bench, summaries, versions, html_grids, figures, insets)
    write_text(files.markdown, render_markdown(document), overwrite=True)
    write_text(files.html, render_html(document), overwrite=True)
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
