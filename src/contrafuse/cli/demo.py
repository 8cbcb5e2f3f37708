"""``contrafuse demo``: serve the local demo page (extra ``demo``: Gradio), offline."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..demo import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT
from ..errors import ContrafuseError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        description="Serve the demo page at http://HOST:PORT: upload an infrared/visible (or functional/MRI) pair "
        "or pick an example, fuse it with one or several models, compare with sliders, read the metrics and "
        "download the fused files. Offline: no analytics, no share link, nothing fetched from the internet.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this "
                        "machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--data-root", type=Path, help="where named datasets are found for the example pairs "
                        "(default: $CONTRAFUSE_DATA or ../shared/data beside the checkout)")
    parser.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"largest file accepted per upload, in MB (default {DEFAULT_MAX_UPLOAD_MB})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ContrafuseError(f"--port must be 1..65535, got {args.port}")
    if args.max_upload_mb < 1:
        raise ContrafuseError(f"--max-upload-mb must be >= 1, got {args.max_upload_mb}")
    if args.data_root is not None and not args.data_root.is_dir():
        raise ContrafuseError(f"--data-root {args.data_root}: not a folder")
    from ..demo.app import serve  # imports Gradio, or says how to install it

    serve(host=args.host, port=args.port, data_root=args.data_root, max_upload_mb=args.max_upload_mb)
    return 0
