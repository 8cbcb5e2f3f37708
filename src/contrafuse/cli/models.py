"""``contrafuse models``: list the registered models."""
from __future__ import annotations

import argparse

from ..models import DEFAULT_MODEL, default_weights_path, list_models, model_info


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models")
    parser.add_argument("pattern", nargs="?", help="shell wildcard, e.g. 'coco*'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in list_models(args.pattern):
        info = model_info(name, load=False)
        if not info.needs_weights:
            weights = "no weights needed"
        elif default_weights_path(name):
            weights = "weights shipped"
        else:
            weights = "needs --weights"
        marker = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name:18s} {info.task:8s} {weights:18s} {info.description}{marker}")
    return 0
