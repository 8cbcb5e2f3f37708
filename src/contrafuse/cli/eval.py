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
import os
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import metrics
from ..errors import ContrafuseError
from ..io import match_folders

FORMATS = ("table", "csv", "json", "markdown")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``eval`` subcommand (sets ``func=run``)."""
    parser = subparsers.add_parser(
        "eval",
        help="compute fusion metrics (EN, MI, VIF, Qabf, SSIM, ...) for a folder of fused images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    parser.set_defaults(func=run)


@dataclass
class Job:
    """One fused image and its sources (a missing partner is recorded as an error)."""

    stem: str
    fused: Path
    ir: Path | None
    vis: Path | None


@dataclass
class Outcome:
    """Result of one image: values, or the error that stopped it, plus metric warnings."""

    stem: str
    values: dict[str, float] | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def collect_jobs(fused_dir: Path, ir_dir: Path, vis_dir: Path) -> list[Job]:
    """One job per fused image, paired with IR and VIS by stem (a missing partner is None).

    The fused folder decides what is evaluated: sources without a fused image are ignored.
    """
    with_ir = match_folders(fused_dir, ir_dir)
    with_vis = match_folders(fused_dir, vis_dir)
    ir_by_stem = {stem: path for stem, _, path in with_ir.pairs}
    vis_by_stem = {stem: path for stem, _, path in with_vis.pairs}
    fused_by_stem = {stem: path for stem, path, _ in with_ir.pairs}
    fused_by_stem.update({stem: path for stem, path, _ in with_vis.pairs})
    fused_by_stem.update({p.stem: p for p in with_ir.only_in_first})
    return [Job(stem, path, ir_by_stem.get(stem), vis_by_stem.get(stem)) for stem, path in sorted(fused_by_stem.items())]


def evaluate(job: Job, names: list[str], convention: str) -> Outcome:
    """Metrics of one job; never raises for a bad image (the error is in the outcome)."""
    missing = [role for role in ("ir", "vis") if getattr(job, role) is None]
    if missing:
        return Outcome(job.stem, error=f"{job.fused}: no matching {' or '.join(missing)} image (matched by stem)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", metrics.MetricWarning)
        try:
            values = metrics.compute(job.fused, ir=job.ir, vis=job.vis, names=names, convention=convention)
        except (ContrafuseError, ValueError, OSError) as exc:
            return Outcome(job.stem, error=str(exc))
    notes = [f"{job.fused}: {w.message}" for w in caught if issubclass(w.category, metrics.MetricWarning)]
    return Outcome(job.stem, values=values, notes=notes)


def evaluate_all(jobs: list[Job], names: list[str], convention: str, workers: int) -> list[Outcome]:
    """Evaluate every job (in ``workers`` processes when > 1) with a tqdm bar on stderr."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=f"eval ({convention})", unit="img", file=sys.stderr, disable=None)
    outcomes: dict[str, Outcome] = {}
    try:
        if workers <= 1:
            for job in jobs:
                outcomes[job.stem] = evaluate(job, names, convention)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(evaluate, job, names, convention): job for job in jobs}
                for future in as_completed(futures):
                    outcome = future.result()
                    outcomes[outcome.stem] = outcome
                    bar.update()
    finally:
        bar.close()
    return [outcomes[job.stem] for job in jobs]


def summary_rows(outcomes: list[Outcome], names: list[str]) -> dict[str, dict[str, float]]:
    """``mean`` and ``std`` (population) of each metric over the images that succeeded."""
    done = [o.values for o in outcomes if o.values is not None]
    if not done:
        return {}
    table = np.array([[row[n] for n in names] for row in done], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mean, std = table.mean(axis=0), table.std(axis=0)
    return {"mean": dict(zip(names, mean.tolist())), "std": dict(zip(names, std.tolist()))}


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.6g}"


def render(outcomes: list[Outcome], names: list[str], convention: str, fmt: str) -> str:
    """The results as text in one of :data:`FORMATS`."""
    rows = [(o.stem, o.values) for o in outcomes if o.values is not None]
    stats = summary_rows(outcomes, names)
    all_rows = rows + [(label, stats[label]) for label in ("mean", "std") if label in stats]
    failed = [o for o in outcomes if o.error]
    if fmt == "json":
        doc = {
            "convention": convention,
            "metrics": names,
            "directions": {n: metrics.metric_info(n).direction for n in names},
            "images": {stem: values for stem, values in rows},
            "mean": stats.get("mean", {}),
            "std": stats.get("std", {}),
            "errors": {o.stem: o.error for o in failed},
        }
        return json.dumps(doc, indent=1) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["image", "convention", *names])
        for stem, values in all_rows:
            writer.writerow([stem, convention, *(repr(values[n]) for n in names)])
        return buffer.getvalue()
    arrows = {n: "↑" if metrics.metric_info(n).direction == "higher" else "↓" for n in names}
    header = ["image", *(f"{n}{arrows[n]}" for n in names)]
    body = [[stem, *(_fmt(values[n]) for n in names)] for stem, values in all_rows]
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


def write_atomic(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    if path.exists() and not overwrite:
        raise ContrafuseError(f"{path}: already exists (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def run(args: argparse.Namespace) -> int:
    """Run ``contrafuse eval``; returns 0 (all images done), 1 (some failed) or 2 (usage error)."""
    try:
        names = metrics.resolve_names(args.metrics)
        if args.out is not None and args.out.exists() and not args.overwrite:
            raise ContrafuseError(f"{args.out}: already exists (pass --overwrite to replace it)")
        if args.workers < 1:
            raise ContrafuseError(f"--workers must be >= 1, got {args.workers}")
        jobs = collect_jobs(args.fused, args.ir, args.vis)
        if not jobs:
            raise ContrafuseError(f"{args.fused}: no images found")
    except (ContrafuseError, ValueError) as exc:
        print(f"contrafuse eval: error: {exc}", file=sys.stderr)
        return 2
    outcomes = evaluate_all(jobs, names, args.convention, args.workers)
    text = render(outcomes, names, args.convention, args.format)
    try:
        if args.out is None:
            sys.stdout.write(text)
        else:
            write_atomic(args.out, text, args.overwrite)
    except (ContrafuseError, OSError) as exc:
        print(f"contrafuse eval: error: {exc}", file=sys.stderr)
        return 2
    return _report(outcomes)


def _report(outcomes: list[Outcome]) -> int:
    for note in (n for o in outcomes for n in o.notes):
        print(f"warning: {note}", file=sys.stderr)
    failed = [o for o in outcomes if o.error]
    if not failed:
        return 0
    print(f"contrafuse eval: {len(failed)} of {len(outcomes)} images failed:", file=sys.stderr)
    for outcome in failed:
        print(f"  {outcome.stem}: {outcome.error}", file=sys.stderr)
    return 1
