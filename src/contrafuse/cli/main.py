"""Entry point of the ``contrafuse`` command."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import warnings

from ..errors import ContrafuseError, ContrafuseWarning

# Each module defines add_parser(subparsers), which adds its subcommand (with func=run). Only
# the command being run is imported, so `--help` and light commands start without torch.
SUBCOMMANDS = {
    "fuse": "fuse an infrared/visible (or functional/MRI) pair, or two folders of pairs",
    "align": "register a misaligned IR/VIS (or functional/MRI) pair, or two folders of pairs",
    "models": "list the registered models",
    "convert": "convert weights (e.g. the authors' .pth pickles) to safetensors",
    "eval": "compute fusion metrics (EN, MI, VIF, Qabf, SSIM, ...) for a folder of fused images",
    "train": "train a fusion method (CS2Fusion, CoCoNet) from a config file",
    "bench": "benchmark models and published results on datasets; write metrics and reports",
    "export": "export a model to ONNX (run it with `contrafuse fuse --backend onnxruntime`)",
    "demo": "serve a local web page to fuse, compare and score pairs (extra demo: pip install 'contrafuse[demo]')",
}


class _Subparsers:
    """The subparsers action, with each command's one-line help added from SUBCOMMANDS."""

    def __init__(self, action: argparse._SubParsersAction) -> None:
        self._action = action

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:  # noqa: ANN003
        return self._action.add_parser(name, help=SUBCOMMANDS[name], **kwargs)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; with ``argv``, only the one it names (if any) is built in full."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="contrafuse", description="Multi-modality image fusion.")
    parser.add_argument("--version", action="version", version=f"contrafuse {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _command_in(argv)
    for name, help_line in SUBCOMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(f"{__package__}.{name}").add_parser(_Subparsers(subparsers))
        else:
            subparsers.add_parser(name, help=help_line)
    return parser


def _command_in(argv: list[str] | None) -> str | None:
    """The subcommand ``argv`` runs, when its first word names one."""
    first = next((word for word in argv or () if not word.startswith("-")), None)
    return first if first in SUBCOMMANDS else None


DEBUG_ENV = "CONTRAFUSE_DEBUG"

# Options whose value may start with a minus sign (a window of -5:40 degrees). argparse takes
# "-5:40" for an option (only plain negative numbers pass as values), so it is attached with "=".
NEGATIVE_VALUE_OPTIONS = ("--ir-range",)
_NEGATIVE_VALUE = re.compile(r"^-[0-9.]")


def attach_negative_values(argv: list[str]) -> list[str]:
    """``["--ir-range", "-5:40"]`` as ``["--ir-range=-5:40"]``; every other token unchanged."""
    joined: list[str] = []
    for token in argv:
        if joined and joined[-1] in NEGATIVE_VALUE_OPTIONS and _NEGATIVE_VALUE.match(token):
            joined[-1] = f"{joined[-1]}={token}"
        else:
            joined.append(token)
    return joined


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``sys.argv[1:]`` by default) parsed, negative ``--ir-range`` windows included;
    ``command_line`` keeps the tokens (an interrupted command prints how to continue it)."""
    tokens = attach_negative_values(sys.argv[1:] if argv is None else [str(a) for a in argv])
    args = build_parser(tokens).parse_args(tokens)
    args.command_line = tokens
    return args


def interrupted_message(args: argparse.Namespace) -> str:
    """``contrafuse: interrupted``, with what the command had finished and how to continue it
    when the subcommand says (its ``on_interrupt(args)``, set with ``set_defaults``)."""
    note = getattr(args, "on_interrupt", None)
    try:
        detail = note(args) if note is not None else ""
    except Exception:  # noqa: BLE001  (the interrupt is reported whatever the note's problem)
        detail = ""
    return "contrafuse: interrupted" + (f": {detail}" if detail else "")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Our warnings as one line (``contrafuse: warning: ...``); others as Python prints them."""
    if issubclass(category, ContrafuseWarning):
        from tqdm import tqdm

        tqdm.write(f"contrafuse: warning: {message}", file=sys.stderr)  # on its own line, above a progress bar
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def _for_command(error: ContrafuseError, args: argparse.Namespace) -> ContrafuseError:
    """``error`` in this command's words: a missing data root names the command's own flag
    (each subcommand with one sets ``data_root_flag``)."""
    from ..data import DataRootError

    flag = getattr(args, "data_root_flag", None)
    return error.for_flag(flag) if isinstance(error, DataRootError) and flag else error


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; exit status 0 (done), 1 (some items failed), 2 (error), 130 (interrupted)."""
    args = parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except ContrafuseError as exc:
        print(f"contrafuse: error: {_for_command(exc, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(args), file=sys.stderr)
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
