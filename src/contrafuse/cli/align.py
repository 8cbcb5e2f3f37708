"""``contrafuse align``: register a misaligned pair (or two folders of pairs) and write the result.

For each pair it writes ``OUT/<stem>.png``, the moving image (infrared by default) resampled into
the fixed image's frame, and ``OUT/<stem>.json``, the transform (matrix, sizes, mode, direction,
confidence), then prints the confidence. ``<stem>`` is the moving file's stem, so that in folder
mode ``OUT`` pairs with the fixed folder by name for ``contrafuse fuse``. Existing files are never
replaced unless ``--overwrite``. A pair that cannot be registered reliably is reported with its
name and nothing is written for it; in folder mode the others still complete. Exit status: 0 all
pairs written, 1 some pair failed, 2 usage error.

With ``--rig`` (two folders of pairs from one fixed camera rig) it writes one transform instead,
the robust consensus of all pairs' estimates, to ``--out`` (a ``.json`` file, or ``OUT/rig.json``):
the file ``contrafuse fuse --transform`` reads. Each pair's distance from the consensus is
printed, outliers and failed pairs are listed, and the spread (median and largest distance of
the pairs used) is reported. Exit status 0 when the transform is written, 1 when no consensus
could be made.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ContrafuseError, ImageWriteError, RegistrationError
from ..registration import (
    DEFAULT_ECC_TOLERANCE,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_WORKING_SIZE,
    DIRECTION_CHOICES,
    FINE_STAGES,
    MODES,
    VERIFY_BELOW,
    align_folders,
    align_pair,
    align_rig,
    check_ecc_tolerance,
    output_stem,
    write_alignment,
    write_rig,
)
from ..registration.rig import RigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``align`` subcommand (sets ``func=run``)."""
    parser = subparsers.add_parser(
        "align",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ir", required=True, type=Path, help="infrared image or folder (medical: CT/PET/SPECT)")
    parser.add_argument("--vis", required=True, type=Path, help="visible image or folder (medical: MRI)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder (created); with --rig a .json file or a folder (OUT/rig.json)")
    parser.add_argument("--mode", choices=MODES, default="affine",
                        help="motion model (default affine); none only resamples to the fixed image's size")
    parser.add_argument("--direction", choices=DIRECTION_CHOICES, default=DIRECTION_CHOICES[0],
                        help="which image is warped into the other's frame (default ir-to-vis)")
    parser.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                        help=f"refuse pairs whose confidence is lower (default {DEFAULT_MIN_CONFIDENCE})")
    parser.add_argument("--verify", action="store_true",
                        help="also register the other way round and refuse a disagreement (twice the time; "
                        "recommended for medical pairs)")
    parser.add_argument("--verify-below", type=float, default=VERIFY_BELOW, metavar="C",
                        help=f"without --verify, that check for pairs whose confidence is below C (default "
                        f"{VERIFY_BELOW}; 0: never, and then raise --min-confidence to 0.30)")
    parser.add_argument("--fine", choices=FINE_STAGES, default="ecc",
                        help="last refinement stage: ecc (default) or mattes (Mattes mutual information, SimpleITK: "
                        "pip install 'contrafuse[itk]'; translation and affine)")
    parser.add_argument("--working-size", type=int, default=DEFAULT_WORKING_SIZE,
                        help=f"longest side of the refinement grid (default {DEFAULT_WORKING_SIZE})")
    parser.add_argument("--ecc-tolerance", type=float, default=DEFAULT_ECC_TOLERANCE, metavar="E",
                        help=f"ECC stops when an iteration moves the correlation by less than E (default "
                        f"{DEFAULT_ECC_TOLERANCE:g}; 1e-5 is slower and can be a little more precise)")
    parser.add_argument("--rig", action="store_true",
                        help="folders of one fixed rig: write one transform, the robust consensus of all pairs "
                        "(outliers reported), for `contrafuse fuse --transform`")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``contrafuse align``; returns 0 (all written), 1 (a pair failed) or 2 (usage error)."""
    if args.ir.is_dir() != args.vis.is_dir():
        raise ContrafuseError(f"--ir {args.ir} and --vis {args.vis}: give two files or two folders")
    if args.out.exists() and not args.out.is_dir() and not args.rig:
        raise ContrafuseError(f"--out {args.out}: exists and is not a folder")
    if args.working_size < 32:
        raise ContrafuseError(f"--working-size must be at least 32, got {args.working_size}")
    try:
        check_ecc_tolerance(args.ecc_tolerance, "--ecc-tolerance")
    except ValueError as exc:
        raise ContrafuseError(str(exc)) from None
    options = {"mode": args.mode, "direction": args.direction, "min_confidence": args.min_confidence,
               "verify": args.verify, "verify_below": args.verify_below, "working_size": args.working_size, "fine": args.fine,
               "ecc_tolerance": args.ecc_tolerance}
    if args.rig:
        return _run_rig(args, options)
    if args.ir.is_dir():
        return _run_folders(args, options)
    return _run_pair(args, options)


def _run_pair(args: argparse.Namespace, options: dict) -> int:
    stem = output_stem(ir=args.ir, vis=args.vis, direction=args.direction)
    for path in (args.out / f"{stem}.png", args.out / f"{stem}.json"):
        if path.exists() and not args.overwrite:
            raise ImageWriteError(path, "already exists (pass --overwrite to replace it)")
    try:
        warped, registration = align_pair(ir=args.ir, vis=args.vis, **options)
    except RegistrationError as exc:
        print(f"contrafuse align: failed: {exc}", file=sys.stderr)
        return 1
    written = write_alignment(args.out, stem, warped, registration, overwrite=args.overwrite)
    print(f"wrote {written.image} and {written.transform} (confidence {written.confidence:.3f})")
    return 0


def _run_folders(args: argparse.Namespace, options: dict) -> int:
    report = align_folders(ir=args.ir, vis=args.vis, out=args.out, overwrite=args.overwrite, progress=True, **options)
    for aligned in report.written:
        print(f"{aligned.stem}: wrote {aligned.image.name} and {aligned.transform.name} (confidence {aligned.confidence:.3f})")
    for path in report.unmatched:
        print(f"unmatched (no partner with the same stem): {path}", file=sys.stderr)
    for stem, message in report.failed:
        print(f"failed {stem}: {message}", file=sys.stderr)
    print(f"aligned {len(report.written)} pair(s) into {args.out}; {len(report.failed)} failed, {len(report.unmatched)} unmatched")
    return 0 if report.ok else 1


def _run_rig(args: argparse.Namespace, options: dict) -> int:
    if not args.ir.is_dir():
        raise ContrafuseError(f"--rig needs two folders of one rig's pairs, got files {args.ir} and {args.vis}")
    if args.mode == "none":
        raise ContrafuseError("--rig needs a motion model (--mode translation, affine or homography)")
    target = args.out if args.out.suffix.lower() == ".json" else args.out / "rig.json"
    if target.exists() and not args.overwrite:
        raise ImageWriteError(target, "already exists (pass --overwrite to replace it)")
    try:
        rig = align_rig(ir=args.ir, vis=args.vis, **options)
    except RigError as exc:
        print(f"contrafuse align --rig: failed: {exc}", file=sys.stderr)
        return 1
    for name, distance in rig.used:
        print(f"{name}: confidence {rig.confidences[name]:.3f}, {distance:.2f} px from the consensus")
    for name, distance in rig.outliers:
        print(f"outlier {name}: confidence {rig.confidences[name]:.3f}, {distance:.1f} px from the consensus (not used)",
              file=sys.stderr)
    for name, message in rig.failed:
        print(f"failed {name}: {message}", file=sys.stderr)
    written = write_rig(target, rig, overwrite=args.overwrite)
    median, largest = rig.spread
    print(f"wrote {written}: the consensus of {len(rig.used)} pair(s) ({len(rig.outliers)} outlier(s), "
          f"{len(rig.failed)} failed); spread {median:.2f} px median, {largest:.2f} px largest")
    return 0
