"""Entry point of the ``contrafuse`` command."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import ContrafuseError

# Each module defines add_parser(subparsers), which registers its subcommand with func=run.
SUBCOMMANDS = ("fuse", "align", "models", "convert", "eval", "train", "bench", "export")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="contrafuse", description="Multi-modality image fusion.")
    parser.add_argument("--version", action="version", version=f"contrafuse {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ContrafuseError as exc:
        print(f"contrafuse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
