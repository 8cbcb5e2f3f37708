"""Entry point of the ``contrafuse`` command."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from ..errors import ContrafuseError, ContrafuseWarning

# Each module defines add_parser(subparsers), which registers its subcommand with func=run.
SUBCOMMANDS = ("fuse", "align", "models", "convert", "eval", "train", "bench", "export", "demo")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="contrafuse", description="Multi-modality image fusion.")
    parser.add_argument("--version", action="version", version=f"contrafuse {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(subparsers)
    return parser


DEBUG_ENV = "CONTRAFUSE_DEBUG"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Our warnings as one line (``contrafuse: warning: ...``); others as Python prints them."""
    if issubclass(category, ContrafuseWarning):
        print(f"contrafuse: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; exit status 0 (done), 1 (some items failed), 2 (error), 130 (interrupted)."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except ContrafuseError as exc:
        print(f"contrafuse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except MemoryError:
        print("contrafuse: error: out of memory (try a smaller input, --device cpu, or fewer workers)", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001  (a user never gets a traceback; a developer asks for it)
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"contrafuse: internal error: {type(exc).__name__}: {exc} "
              f"(please report it; set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 3
    finally:
        warnings.showwarning = _python_show_warning


if __name__ == "__main__":
    sys.exit(main())
