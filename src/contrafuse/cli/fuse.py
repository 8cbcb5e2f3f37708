"""``contrafuse fuse``: fuse one pair of files, or every pair of two folders."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ContrafuseError
from ..fusion import Color, FuseOptions, Gamut, Rounding, fuse, fuse_folders
from ..io import write_image
from ..models import DEFAULT_MODEL
from ..video import is_video

COLOR_CHOICES = [c.value for c in Color]
ROUNDING_CHOICES = [r.value for r in Rounding]
GAMUT_CHOICES = [g.value for g in Gamut]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fuse",
        help="fuse an infrared/visible (or functional/MRI) pair, or two folders of pairs",
        description="Fuse IR with VIS. Files give one output file; folders are paired by file stem; "
        "two videos (.mp4, .mkv, ...) are fused frame by frame.",
    )
    parser.add_argument("--ir", required=True, type=Path, help="infrared image or folder (medical: CT/PET/SPECT)")
    parser.add_argument("--vis", required=True, type=Path, help="visible image or folder (medical: MRI)")
    parser.add_argument("--out", required=True, type=Path, help="output file (pair) or folder (folders)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"registered model (default: {DEFAULT_MODEL}); see `contrafuse models`")
    parser.add_argument("--weights", type=Path, help="weights file (.safetensors or an author's .pth) instead of the shipped ones")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--color", choices=COLOR_CHOICES, default="auto", help="colour output (default auto)")
    parser.add_argument("--rounding", choices=ROUNDING_CHOICES, default="round", help="float-to-integer rule; truncate = reference code")
    parser.add_argument("--gamut", choices=GAMUT_CHOICES, default="auto",
                        help="out-of-range colours: clip channels, or keep the hue (auto: hue for pseudo-colour --ir)")
    parser.add_argument("--resize", action="store_true", help="resample IR to the VIS size when they differ")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--suffix", default=".png", help="output suffix in folder mode (default .png)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="torch (default) or onnxruntime (--model is then a .onnx file from `contrafuse export`)")
    parser.set_defaults(func=run)


def _weights(args: argparse.Namespace) -> str | Path:
    return args.weights if args.weights is not None else "default"


def options_of(args: argparse.Namespace) -> FuseOptions:
    """The pipeline settings the command line asks for."""
    return FuseOptions(color=args.color, rounding=args.rounding, gamut=args.gamut, resize=args.resize)


def _model_arguments(args: argparse.Namespace) -> dict:
    return {"model": args.model, "weights": _weights(args), "device": args.device, "options": options_of(args)}


def _check_backend(args: argparse.Namespace) -> None:
    is_onnx = args.model.endswith(".onnx")
    if args.backend == "onnxruntime" and not is_onnx:
        raise ContrafuseError(f"--backend onnxruntime needs --model FILE.onnx (see `contrafuse export`), got {args.model!r}")
    if args.backend == "onnxruntime" and args.weights is not None:
        raise ContrafuseError(f"--weights {args.weights}: an ONNX model carries its weights; drop --weights")
    if args.backend == "torch" and is_onnx:
        raise ContrafuseError(f"--model {args.model}: an ONNX file needs --backend onnxruntime")


def run(args: argparse.Namespace) -> int:
    _check_backend(args)
    if is_video(args.ir) or is_video(args.vis):
        return _run_video(args)
    if args.ir.is_dir() != args.vis.is_dir():
        raise ContrafuseError(f"--ir {args.ir} and --vis {args.vis}: give two files or two folders")
    if args.ir.is_dir():
        return _run_folders(args)
    out = args.out / f"{args.vis.stem}.png" if args.out.is_dir() else args.out
    fused = fuse(ir=args.ir, vis=args.vis, **_model_arguments(args))
    write_image(out, fused, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def _run_folders(args: argparse.Namespace) -> int:
    report = fuse_folders(ir=args.ir, vis=args.vis, out=args.out, overwrite=args.overwrite, suffix=args.suffix,
                          **_model_arguments(args))
    for path in report.unmatched:
        print(f"unmatched (no partner with the same stem): {path}", file=sys.stderr)
    for stem, message in report.failed:
        print(f"failed {stem}: {message}", file=sys.stderr)
    print(f"fused {len(report.written)} pair(s) into {args.out}; {len(report.failed)} failed, {len(report.unmatched)} unmatched")
    return 0 if report.ok else 1


def _run_video(args: argparse.Namespace) -> int:
    from ..video import fuse_video

    if not (is_video(args.ir) and is_video(args.vis) and is_video(args.out)):
        raise ContrafuseError(f"--ir {args.ir}, --vis {args.vis}, --out {args.out}: video fusion needs three video files")
    fuse_video(ir=args.ir, vis=args.vis, out=args.out, overwrite=args.overwrite, **_model_arguments(args))
    print(f"wrote {args.out}")
    return 0
