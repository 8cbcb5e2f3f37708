"""What the subcommands' parsers share."""
from __future__ import annotations

import argparse


def documented_parser(subparsers: argparse._SubParsersAction, name: str, *, help: str,
                      doc: str | None) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``: ``help`` in the command list, its module's ``doc`` (kept
    as written) in ``--help``."""
    return subparsers.add_parser(name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
