"""``contrafuse train METHOD``: train a method from a YAML config (alone or under torchrun)."""
from __future__ import annotations

import argparse

from ..training.command import DESCRIPTION, add_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", description=DESCRIPTION
    )
    add_arguments(parser)
