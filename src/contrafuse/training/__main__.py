"""``python -m contrafuse.training METHOD ...``: the ``contrafuse train`` command on its own.

Same arguments as ``contrafuse train``; it loads only the training stack, so it runs where the
other subcommands' optional dependencies are missing (e.g. a GPU box without kornia) and under
``torchrun -m contrafuse.training``.
"""
from __future__ import annotations

import argparse
import sys

from ..cli import train as train_cli
from ..errors import ContrafuseError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contrafuse.training")
    train_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except ContrafuseError as exc:
        print(f"contrafuse train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
