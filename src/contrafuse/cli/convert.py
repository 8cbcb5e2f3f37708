"""``contrafuse convert IN OUT.safetensors``: an author's pickle (or our file) to our format."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..atomic import check_writable
from ..errors import ContrafuseError

INPUT_CONVENTION = "forward(*, ir, vis): (B,1,H,W) luma in [0,1] -> fused luma in [0,1]"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert")
    parser.add_argument("source", type=Path, help="input weights: an author's whole-module .pth, or .safetensors")
    parser.add_argument("target", type=Path, help="output .safetensors file")
    parser.add_argument("--model", default="cs2fusion", help="registered model the weights belong to")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(func=run)


def convert(source: Path, target: Path, model_name: str = "cs2fusion", overwrite: bool = False) -> Path:
    """Read ``source`` safely, check it fits ``model_name``, write it as safetensors."""
    if target.suffix != ".safetensors":
        raise ContrafuseError(f"{target}: the output must end in .safetensors")
    check_writable(target, overwrite=overwrite)
    from ..models import create_model
    from ..models.weights import save_weights

    model = create_model(model_name, weights=source)
    metadata = {"model": model_name, "input_convention": INPUT_CONVENTION, "source": source.name}
    return save_weights(model, target, metadata, overwrite=overwrite)


def run(args: argparse.Namespace) -> int:
    path = convert(args.source, args.target, args.model, args.overwrite)
    print(f"wrote {path}")
    return 0
