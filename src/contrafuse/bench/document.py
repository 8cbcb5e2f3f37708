"""The benchmark report as one document, and its two renderings (report.md and report.html).

:func:`report_document` builds the report once, as a list of sections of blocks (settings,
tables, notes, figures); every block renders itself as markdown and as HTML, and
:func:`render_markdown` / :func:`render_html` lay the blocks out. The wording is in :mod:`.notes`.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from .grid import InsetChoice
from .notes import (arrow, convention_note, fmt, fmt_rank, pairs_note, settings_lines, significance_note,
                    significance_rows, timing_rows)
from .runner import BenchResult
from .specs import BenchDataset
from .summary import DatasetSummary


# -- markdown and HTML elements ------------------------------------------------------------------

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


# -- the document ---------------------------------------------------------------------------------
# One list of blocks, each rendering itself as markdown lines (an empty list: not shown) and as an
# HTML fragment (None: not shown); the two renderers only lay the blocks out.


@dataclass
class Figures:
    """The figures of one dataset, relative to the output folder (None when not drawn)."""

    boxplots: str | None = None
    grid: str | None = None


@dataclass(frozen=True)
class Settings:
    """The run's settings, one bullet each (markdown formatting stripped in HTML)."""

    lines: list[str]

    def markdown(self) -> list[str]:
        return [f"- {line}" for line in self.lines]

    def html(self) -> str:
        return "<ul>" + "".join(f"<li>{_e(re.sub(r'[*`]', '', line))}</li>" for line in self.lines) + "</ul>"


@dataclass(frozen=True)
class MethodList:
    """The compared methods: ``(label, description)``."""

    methods: list[tuple[str, str]]

    def markdown(self) -> list[str]:
        return ["Methods:", "", *(f"- `{label}`: {text}" for label, text in self.methods)]

    def html(self) -> str:
        items = "".join(f"<li><code>{_e(label)}</code>: {_e(text)}</li>" for label, text in self.methods)
        return f"<p>Methods:</p><ul>{items}</ul>"


@dataclass(frozen=True)
class Paragraph:
    """Text; with a ``role`` it is a note under a table (`code` spans kept, named by ``data-role``
    in the HTML)."""

    text: str
    role: str | None = None

    def markdown(self) -> list[str]:
        return [self.text]

    def html(self) -> str:
        if self.role is None:
            return f"<p>{_e(self.text)}</p>"
        return f'<p class="note" data-role="{self.role}">{_inline_md(self.text)}</p>'


@dataclass(frozen=True)
class SummaryTable:
    """A table of one dataset's summary, by its markdown and HTML renderers (the metric table, the
    p-values)."""

    summary: DatasetSummary
    to_markdown: Callable[[DatasetSummary], list[str]]
    to_html: Callable[[DatasetSummary], str]

    def markdown(self) -> list[str]:
        return self.to_markdown(self.summary)

    def html(self) -> str:
        return self.to_html(self.summary)


@dataclass(frozen=True)
class Timing:
    """Median seconds per pair of each model method: ``(method, s/pair, device, pairs timed)``."""

    rows: list[tuple[str, str, str, str]]

    def markdown(self) -> list[str]:
        return ["Fusion time (median seconds per pair, model and colour handling; file I/O excluded):", "",
                _md_row(["Method", "s/pair", "Device", "Pairs timed"]), "|:---|---:|:---|---:|",
                *(_md_row(list(row)) for row in self.rows)]

    def html(self) -> str:
        body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return ("<p>Fusion time (median seconds per pair; file I/O excluded):</p>"
                f'<table class="timing"><tr><th>Method</th><th>s/pair</th><th>Device</th><th>Pairs timed</th></tr>{body}</table>')


@dataclass(frozen=True)
class Failures:
    """The pairs that failed: ``(method, pair, message)``."""

    items: list[tuple[str, str, str]]

    def markdown(self) -> list[str]:
        return ["Failures:", "", *(f"- {m} / {n}: {e}" for m, n, e in self.items)]

    def html(self) -> str:
        return '<ul class="failures">' + "".join(f"<li>{_e(m)} / {_e(n)}: {_e(e)}</li>" for m, n, e in self.items) + "</ul>"


@dataclass(frozen=True)
class BoxPlots:
    """The per-image box plots (a PNG relative to the report)."""

    src: str
    caption: str = "Per-image metric values (box plots, ▲ = mean)"

    def markdown(self) -> list[str]:
        return [f"![{self.caption}]({self.src})"]

    def html(self) -> str:
        return (f'<figure><img class="figure" src="{_e(self.src)}" alt="{_e(self.caption)}">'
                f"<figcaption>{_e(self.caption)}</figcaption></figure>")


@dataclass(frozen=True)
class ResultGrid:
    """Sources and results with zoomed insets: in markdown the paper figure (when drawn), in HTML
    a table of the panel images (``rows``: per pair, ``(column title, image path)``)."""

    dataset: str
    rows: list[tuple[str, list[tuple[str, str]]]]
    paper_figure: str | None

    def markdown(self) -> list[str]:
        return [f"![Sources and results with zoomed insets]({self.paper_figure})"] if self.paper_figure else []

    def html(self) -> str | None:
        return _html_grid(self.dataset, self.rows, self.paper_figure) if self.rows else None


Block = Union[Settings, MethodList, Paragraph, SummaryTable, Timing, Failures, BoxPlots, ResultGrid]


@dataclass(frozen=True)
class Section:
    """One dataset's part of the report."""

    title: str
    blocks: list[Block]


@dataclass(frozen=True)
class Document:
    """The whole report: a title, blocks before the sections, the sections."""

    title: str
    intro: list[Block]
    sections: list[Section]


def report_document(bench: BenchResult, summaries: dict[str, DatasetSummary], versions: dict[str, str],
                    grids: dict[str, list[tuple[str, list[tuple[str, str]]]]], figures: dict[str, Figures],
                    insets: InsetChoice) -> Document:
    """The report: settings, then per dataset the metric table and its notes, p-values, timing,
    failures, box plots and the image grid."""
    intro: list[Block] = [Settings(settings_lines(bench, versions, insets)),
                          MethodList([(m.label, m.describe()) for m in bench.methods])]
    return Document("Fusion benchmark", intro, [dataset_section(bench, dataset, summaries[dataset.label], grids,
                                                                figures) for dataset in bench.datasets])


def dataset_section(bench: BenchResult, dataset: BenchDataset, summary: DatasetSummary,
                    grids: dict[str, list[tuple[str, list[tuple[str, str]]]]], figures: dict[str, Figures]) -> Section:
    """The blocks of one dataset, in report order (blocks with nothing to show are left out)."""
    label = dataset.label
    blocks: list[Block] = [Paragraph(f"{dataset.source}, {len(dataset.pairs)} pairs."),
                           SummaryTable(summary, markdown_table, html_table), Paragraph(pairs_note(summary), "pairs")]
    note = convention_note(bench.convention, summary.metric_names)
    if note:
        blocks.append(Paragraph(note, "convention"))
    blocks.append(SummaryTable(summary, markdown_significance, html_significance))  # nothing with one method
    timing = timing_rows(bench, label)
    if timing:
        blocks.append(Timing(timing))
    failed = [(m, n, e) for m, r in bench.results[label].items() for n, e in r.failed.items()]
    if failed:
        blocks.append(Failures(failed))
    shown = figures.get(label, Figures())
    if shown.boxplots:
        blocks.append(BoxPlots(shown.boxplots))
    blocks.append(ResultGrid(label, grids.get(label) or [], shown.grid))
    return Section(label, blocks)


# -- the two renderers -----------------------------------------------------------------------------

def render_markdown(document: Document) -> str:
    """report.md: the blocks' markdown, separated by blank lines."""
    lines = [f"# {document.title}"]
    for block in document.intro:
        lines += ["", *block.markdown()]
    for section in document.sections:
        lines += ["", f"## {section.title}"]
        for block in section.blocks:
            shown = block.markdown()
            if shown:
                lines += ["", *shown]
    return "\n".join(lines) + "\n"


def render_html(document: Document) -> str:
    """report.html: the blocks' HTML, one section element per dataset, with the page's style and checks."""
    parts = [
        "<!DOCTYPE html>", f'<html lang="en"><head><meta charset="utf-8"><title>{_e(document.title)}</title>',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{_STYLE}</style><script>{_PAGE_CHECK}</script></head><body>", f"<h1>{_e(document.title)}</h1>",
        *(block.html() for block in document.intro),
    ]
    for section in document.sections:
        parts.append(f'<section data-dataset="{_e(section.title)}"><h2>{_e(section.title)}</h2>')
        parts += [shown for shown in (block.html() for block in section.blocks) if shown is not None]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
