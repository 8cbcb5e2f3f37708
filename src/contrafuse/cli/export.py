"""``contrafuse export``: write a registered model as an ONNX file (dynamic height and width)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..models import list_models
from ..options import parse_model_options
from .fuse import add_model_option_argument


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``export`` subcommand (sets ``func=run``)."""
    parser = subparsers.add_parser(
        "export",
        description="Export a registered model's forward(ir, vis) to ONNX: inputs ir, vis float32 (N,1,H,W) "
        "luma in [0,1], output fused; N, H and W dynamic. The result is checked against PyTorch on odd sizes.",
    )
    parser.add_argument("--model", required=True, help=f"registered model ({', '.join(list_models())})")
    parser.add_argument("--weights", help="weights file instead of the shipped ones; 'none' = random weights")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (default onnx)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the one contrafuse exports and tests, "
                        "contrafuse.export.ONNX_OPSET)")
    parser.add_argument("--out", required=True, type=Path, help="output .onnx file")
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="fp32 (default) or int8: static quantisation for ONNX Runtime on CPU, calibrated on "
                        "training pairs (recorded in the file's metadata); see docs/deployment.md")
    parser.add_argument("--calibration", metavar="NAME[:SPLIT][+NAME[:SPLIT]...] | IR_DIR,VIS_DIR",
                        help="int8: dataset split (default roadscene:train; several joined by + share the pairs) or "
                        "two folders paired by stem that the calibration pairs come from")
    parser.add_argument("--calibration-pairs", type=int, metavar="N", help="int8: number of calibration pairs (default 16)")
    parser.add_argument("--data-root", type=Path, help="root of the named datasets (default: $CONTRAFUSE_DATA or shared/data)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_model_option_argument(parser)
    parser.set_defaults(func=run, data_root_flag="--data-root")


def _weights(value: str | None) -> str | None:
    if value is None:
        return "default"
    return None if value.lower() == "none" else value


def run(args: argparse.Namespace) -> int:
    from ..export import ONNX_OPSET, export_onnx

    args.opset = args.opset or ONNX_OPSET

    path = export_onnx(args.model, args.out, _weights(args.weights), args.opset, verify=not args.no_verify,
                       overwrite=args.overwrite, precision=args.precision, calibration=args.calibration,
                       calibration_pairs=args.calibration_pairs, data_root=args.data_root,
                       model_options=parse_model_options(args.model_options))
    print(f"wrote {path} ({args.precision}, opset {args.opset}, dynamic batch/height/width)")
    return 0
