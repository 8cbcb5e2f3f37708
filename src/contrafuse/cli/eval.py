"""``contrafuse eval``: fusion metrics of a folder of fused images against their IR/VIS sources.

Files are paired by stem (``01.png`` ~ ``01.jpg``). One row per image, then ``mean`` and
``std`` rows (population std over the images that succeeded). The convention is printed in
every format. A bad image (unreadable, wrong size, missing partner) is reported and the
others still complete; the exit status is then 1. Usage errors exit with 2.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from .. import metrics
from ..atomic import check_writable, write_text
from ..errors import ContrafuseError
from ..evaluation import MeanStd, Score, finite_or_none, mean_and_std, score_many
from ..io import list_images
from ..thermal import IrRange, parse_ir_range
from .fuse import add_ir_range_argument
from .parsers import documented_parser

FORMATS = ("table", "csv", "json", "markdown")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``eval`` subcommand (sets ``func=run``)."""
    parser = documented_parser(subparsers, "eval", doc=__doc__)
    parser.add_argument("--fused", type=Path, required=True, help="folder of fused images")
    parser.add_argument("--ir", type=Path, required=True, help="folder of infrared sources")
    parser.add_argument("--vis", type=Path, required=True, help="folder of visible sources")
    parser.add_argument(
        "--metrics", nargs="+", default=None, metavar="NAME",
        help=f"metric names, 'default' or 'all' (default: {' '.join(metrics.DEFAULT_NAMES)}); "
        f"all: {' '.join(metrics.ALL_NAMES)}",
    )
    parser.add_argument("--convention", choices=metrics.CONVENTIONS, default=metrics.DEFAULT_CONVENTION,
                        help="numeric conventions: cddfuse (CDDFuse Python evaluator, default) or matlab (Tang's code)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--out", type=Path, default=None, help="write the results to this file instead of stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--workers", type=int, default=1, help="processes evaluating images in parallel (default 1)")
    add_ir_range_argument(parser)  # the metrics judge the infrared source as the model saw it
    parser.set_defaults(func=run)


def match_sources(fused_dir: Path, ir_dir: Path, vis_dir: Path) -> dict[str, dict[str, Path | None]]:
    """stem -> {"fused": file, "ir": file or None, "vis": file or None} for every fused image.

    Files are matched by stem; the fused folder decides what is evaluated (sources without a
    fused image are ignored); None marks a missing source.
    """
    ir_files, vis_files = list_images(ir_dir), list_images(vis_dir)
    return {
        stem: {"fused": fused, "ir": ir_files.get(stem), "vis": vis_files.get(stem)}
        for stem, fused in sorted(list_images(fused_dir).items())
    }


def evaluate_folders(
    found: dict[str, dict[str, Path | None]], names: list[str], convention: str, workers: int,
    ir_range: str | IrRange = "auto",
) -> dict[str, Score]:
    """A :class:`Score` per stem of ``found``, in its order; a missing source is that image's error."""
    complete = {stem: files for stem, files in found.items() if None not in files.values()}
    scores = score_many(
        [files["fused"] for files in complete.values()],
        ir=[files["ir"] for files in complete.values()],
        vis=[files["vis"] for files in complete.values()],
        names=names, convention=convention, workers=workers, desc=f"eval ({convention})", ir_range=ir_range,
    )
    by_stem = dict(zip(complete, scores))
    for stem, files in found.items():
        if stem not in by_stem:
            missing = " or ".join(role for role in ("ir", "vis") if files[role] is None)
            by_stem[stem] = Score(error=f"{files['fused']}: no matching {missing} image (matched by stem)")
    return {stem: by_stem[stem] for stem in found}


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.6g}"


def render(scores: dict[str, Score], names: list[str], convention: str, fmt: str) -> str:
    """The results as text in one of :data:`FORMATS` (JSON is strict: NaN and inf are null)."""
    rows = [(stem, score.values) for stem, score in scores.items() if score.ok]
    stats = mean_and_std((values for _, values in rows), names)
    summary_rows = [("mean", stats.mean), ("std", stats.std)] if stats.count else []
    if fmt == "json":
        return _json(scores, rows, stats, names, convention)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["image", "convention", *names])
        for stem, values in rows + summary_rows:
            writer.writerow([stem, convention, *(repr(values[n]) for n in names)])
        return buffer.getvalue()
    arrows = {n: "↑" if metrics.metric_info(n).direction == "higher" else "↓" for n in names}
    header = ["image", *(f"{n}{arrows[n]}" for n in names)]
    body = [[stem, *(_fmt(values[n]) for n in names)] for stem, values in rows + summary_rows]
    if fmt == "markdown":
        lines = [f"Convention: `{convention}` (↑ higher is better, ↓ lower is better)", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * len(names)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [f"convention: {convention}"]
    for i, row in enumerate([header, *body]):
        lines.append("  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0 or (len(rows) and i == len(rows)):
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _json(scores: dict[str, Score], rows: list, stats: MeanStd, names: list[str], convention: str) -> str:
    def nulls(values: dict[str, float]) -> dict[str, float | None]:
        return {n: finite_or_none(v) for n, v in values.items()}

    doc = {
        "convention": convention,
        "metrics": names,
        "directions": {n: metrics.metric_info(n).direction for n in names},
        "images": {stem: nulls(values) for stem, values in rows},
        "mean": nulls(stats.mean) if stats.count else {},
        "std": nulls(stats.std) if stats.count else {},
        "errors": {stem: score.error for stem, score in scores.items() if not score.ok},
    }
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run ``contrafuse eval``; returns 0 (all images done), 1 (some failed) or 2 (usage error)."""
    try:
        names = metrics.resolve_names(args.metrics)
        ir_range = parse_ir_range(args.ir_range)
        if args.out is not None:
            check_writable(args.out, overwrite=args.overwrite)
        if args.workers < 1:
            raise ContrafuseError(f"--workers must be >= 1, got {args.workers}")
        found = match_sources(args.fused, args.ir, args.vis)
        if not found:
            raise ContrafuseError(f"{args.fused}: no images found")
    except (ContrafuseError, ValueError) as exc:
        print(f"contrafuse eval: error: {exc}", file=sys.stderr)
        return 2
    scores = evaluate_folders(found, names, args.convention, args.workers, ir_range)
    text = render(scores, names, args.convention, args.format)
    try:
        if args.out is None:
            sys.stdout.write(text)
        else:
            write_text(args.out, text, overwrite=args.overwrite)
    except (ContrafuseError, OSError) as exc:
        print(f"contrafuse eval: error: {exc}", file=sys.stderr)
        return 2
    return _report(scores)


def _report(scores: dict[str, Score]) -> int:
    for note in (n for score in scores.values() for n in score.warnings):
        print(f"warning: {note}", file=sys.stderr)
    failed = {stem: score.error for stem, score in scores.items() if not score.ok}
    if not failed:
        return 0
    print(f"contrafuse eval: {len(failed)} of {len(scores)} images failed:", file=sys.stderr)
    for stem, error in failed.items():
        print(f"  {stem}: {error}", file=sys.stderr)
    return 1
