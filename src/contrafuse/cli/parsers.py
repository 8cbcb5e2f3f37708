"""What the subcommands' parsers share."""
from __future__ import annotations

import argparse


def documented_parser(subparsers: argparse._SubParsersAction, name: str, *, doc: str | None) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` whose ``--help`` is its module's ``doc``, kept as written
    (the one-line help in the command list comes from ``cli.main.SUBCOMMANDS``)."""
    return subparsers.add_parser(name, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
