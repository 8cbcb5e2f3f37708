"""``contrafuse bench``: fuse datasets with several models, score them with the metrics suite, report.

Writes into --out: metrics.csv, metrics.json, report.md, report.html (+ assets/), figures/
(box plots and image grids as PNG and PDF) and fused/ (model outputs, reused by the next run
unless --refresh). See docs/bench.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import metrics
from ..bench.summary import BASES
from ..errors import ContrafuseError
from ..options import FuseOptions
from ..shards import current_shard
from .fuse import COLOR_CHOICES, ROUNDING_CHOICES, add_ir_range_argument, add_speed_arguments, speed_options
from .parsers import documented_parser


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``bench`` subcommand (sets ``func=run``)."""
    parser = documented_parser(subparsers, "bench", doc=__doc__)
    parser.add_argument("--data", action="append", required=True, metavar="NAME[:SPLIT] | [LABEL=]IR_DIR,VIS_DIR",
                        help="a named dataset (tno42, roadscene:test50, harvard_mri_ct, ...) or two folders paired "
                        "by file stem; repeat for several datasets (one table each)")
    parser.add_argument("--models", action="append", metavar="NAME[=WEIGHTS],...",
                        help="comma-separated registered models, each optionally with a weights file, and exported "
                        "ONNX files (FILE.onnx or LABEL=FILE.onnx, run by ONNX Runtime)")
    parser.add_argument("--model-option", dest="model_options", action="append", metavar="[NAME:]KEY=VALUE",
                        help="an option of a model in --models, repeatable: NAME:KEY=VALUE for one model, KEY=VALUE for "
                        "every listed model that has it (e.g. cs2fusion:border=zeros, the authors' borders)")
    parser.add_argument("--weights", action="append", metavar="NAME=PATH",
                        help="weights file of a model listed in --models ('none' = random weights); repeatable")
    parser.add_argument("--results", action="append", metavar="LABEL=DIR",
                        help="a folder of fused images of another method, named like the pairs (or DIR/<dataset>/); repeatable")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help=f"metric names, 'default' or 'all' (default: {' '.join(metrics.DEFAULT_NAMES)})")
    parser.add_argument("--convention", choices=metrics.CONVENTIONS, default=metrics.DEFAULT_CONVENTION,
                        help="metric conventions (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default) for the models")
    parser.add_argument("--color", choices=COLOR_CHOICES, default="gray",
                        help="colour of the fused outputs (default gray: metrics are computed on gray images)")
    parser.add_argument("--rounding", choices=ROUNDING_CHOICES, default="round", help="float-to-integer rule (default round)")
    parser.add_argument("--refresh", action="store_true", help="recompute fused outputs and metrics even when cached")
    parser.add_argument("--limit", type=int, help="use only the first N pairs of each dataset (quick runs)")
    parser.add_argument("--data-root", type=Path, help="root of the named datasets (default: $CONTRAFUSE_DATA or shared/data)")
    parser.add_argument("--workers", type=int, default=1, help="processes computing metrics (default 1)")
    parser.add_argument("--grid", type=int, default=3, metavar="N", help="pairs per dataset in the image grids (default 3)")
    parser.add_argument("--grid-pairs", metavar="NAME,...", help="pair names to show in the image grids instead")
    parser.add_argument("--inset", action="append", metavar="target|detail|X,Y,W,H|PAIR=X,Y,W,H",
                        help="where the zoomed insets look: 'target' (default: the infrared target), 'detail' (most "
                        "gradient energy), a box X,Y,W,H in pixels (or fractions with a decimal point, e.g. "
                        "0.5,0.2,0.25,0.25) for every pair, or PAIR=X,Y,W,H for one pair; repeatable")
    parser.add_argument("--rank-pairs", choices=BASES, default="common",
                        help="'common' (default): means, ranks and tests over the pairs every method has; "
                        "'own': each method over its own pairs (not a fair comparison when they differ)")
    parser.add_argument("--no-plots", action="store_true", help="skip the matplotlib figures (no matplotlib needed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_ir_range_argument(parser)
    add_speed_arguments(parser, workers_flag="--fuse-workers")
    parser.set_defaults(func=run, data_root_flag="--data-root")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; 0 when every pair of every method was scored, 1 when some failed."""
    if args.workers < 1:
        raise ContrafuseError(f"--workers must be >= 1, got {args.workers}")
    if args.limit is not None and args.limit < 1:
        raise ContrafuseError(f"--limit must be >= 1, got {args.limit}")
    from ..bench import apply_model_options, check_unique, parse_insets, parse_models, parse_results, parse_weights
    from ..bench import plots, resolve_dataset
    from ..bench import run_bench, write_report

    try:
        names = metrics.resolve_names(args.metrics)
    except ValueError as exc:
        raise ContrafuseError(f"--metrics: {exc}") from None
    insets = parse_insets(args.inset)
    draw = not args.no_plots
    main = current_shard().is_main
    if draw and not plots.available() and main:  # say so now, not after fusing and scoring everything
        print("contrafuse bench: warning: matplotlib is not installed, so the figures are skipped (tables, report.html "
              "and its image grid are still written); pip install 'contrafuse[report]' for them, or pass --no-plots",
              file=sys.stderr)
        draw = False
    datasets = [resolve_dataset(spec, args.data_root, args.limit) for spec in args.data]
    models = apply_model_options(parse_models(args.models, parse_weights(args.weights)), args.model_options)
    methods = check_unique(models + parse_results(args.results))
    bench = run_bench(datasets, methods, args.out, metric_names=names, convention=args.convention, device=args.device,
                      options=FuseOptions(color=args.color, rounding=args.rounding, ir_range=args.ir_range,
                                          backend="torch", **speed_options(args)),
                      refresh=args.refresh,
                      workers=args.workers, progress=not args.quiet)
    status = 1 if bench.warnings else 0
    if not main:  # under torchrun, every process holds the whole result; rank 0 reports it
        return status
    grid_pairs = [n.strip() for n in args.grid_pairs.split(",")] if args.grid_pairs else None
    files = write_report(bench, args.out, args.grid, grid_pairs, plots=draw, insets=insets, basis=args.rank_pairs)
    for warning in bench.warnings:
        print(f"failed {warning}", file=sys.stderr)
    print(f"wrote {files.markdown}, {files.html}, {files.csv}, {files.json}"
          + (f" and {len(files.figures)} figure file(s)" if files.figures else ""))
    return status
