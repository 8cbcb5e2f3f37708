"""``python -m contrafuse.training METHOD ...``: the ``contrafuse train`` command on its own.

Same arguments as ``contrafuse train``; it loads only the training stack (also under
``torchrun -m contrafuse.training``).
"""
from __future__ import annotations

import argparse
import sys

from ..errors import ContrafuseError
from .command import DESCRIPTION, add_arguments, interrupted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contrafuse.training", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except ContrafuseError as exc:
        print(f"contrafuse train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"contrafuse train: interrupted: {interrupted(args)}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
