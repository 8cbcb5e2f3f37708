"""The arguments and the action of ``contrafuse train`` (also ``python -m contrafuse.training``).

Kept in the training package so that its own entry point loads nothing of the CLI.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from .config import ConfigError, TrainConfig, apply_overrides, config_from_dict
from .engine import load_config, train
from .recipe import get_recipe, list_recipes

DESCRIPTION = (
    "Train METHOD. Runs on CPU, one GPU, or data-parallel under "
    "`torchrun --nproc_per_node N -m contrafuse.training METHOD ...` without changes."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``contrafuse train``; sets ``func=run``."""
    parser.add_argument("method", help=f"training recipe ({', '.join(list_recipes()) or 'none registered'})")
    parser.add_argument("--config", type=Path, metavar="FILE|NAME",
                        help="YAML config file, or the name of a shipped config (cs2fusion_smoke, cs2fusion_roadscene, "
                        "coconet_roadscene, coconet_medical, ...); optional with --resume (the run's own config is used)")
    parser.add_argument("--data", type=Path, help="data root holding the named datasets (default: $CONTRAFUSE_DATA, ../shared/data)")
    parser.add_argument("--out", type=Path, help="run folder for checkpoint, logs and weights (default: runs/METHOD)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.pt where the run stopped; with --set train.steps=N "
                        "(larger), extend a finished run")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in an OUT that holds a run (its checkpoint, logs and validation are removed)")
    parser.add_argument("--init", metavar="WEIGHTS",
                        help="fine-tune: start from inference weights ('default' = the shipped ones, our .safetensors, "
                        "or an author's .pth) instead of random initialisation (= --set train.init=WEIGHTS)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=2000 --set optim.lr_backbone=1e-3 (repeatable)",
    )
    parser.add_argument(
        "--vgg-weights", type=Path, metavar="FILE",
        help="CoCoNet: a torchvision vgg19 state dict file for the VGG trunk and loss (= --set vgg.weights=FILE)",
    )
    parser.set_defaults(func=run, data_root_flag="--data", on_interrupt=interrupted)


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides, with ``--data`` and ``--vgg-weights`` spelled as overrides first."""
    extra = [f"data.root={args.data}"] if args.data is not None else []
    if args.vgg_weights is not None:
        extra.append(f"vgg.weights={args.vgg_weights}")
    if args.init is not None:
        extra.append(f"train.init={args.init}")
    return [*extra, *args.overrides]


def _resumed_config(args: argparse.Namespace, out: Path) -> TrainConfig:
    """The checkpoint's own config (plus overrides) when resuming without --config."""
    path = out / CHECKPOINT_NAME
    checkpoint = load_checkpoint(path)
    if checkpoint["method"] != args.method:
        raise CheckpointError(f"{path}: is a {checkpoint['method']!r} run, not {args.method!r}")
    config_class = get_recipe(args.method).config_class
    try:
        config_from_dict(config_class, checkpoint["config"], where=f"{path}: config")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config does not fit this version's {args.method!r} recipe ({exc})") from None
    return config_from_dict(config_class, apply_overrides(checkpoint["config"], overrides_of(args)))


def run_folder(args: argparse.Namespace) -> Path:
    """The run folder: ``--out``, else ``runs/METHOD``."""
    return args.out if args.out is not None else Path("runs") / args.method


def interrupted(args: argparse.Namespace) -> str:
    """The step an interrupted run can continue from, and the command that continues it."""
    out = run_folder(args)
    path = out / CHECKPOINT_NAME
    if not path.is_file():
        return f"no checkpoint was written in {out} yet; start the run again"
    try:
        step = load_checkpoint(path)["step"]
    except CheckpointError as exc:
        return f"{exc}; start the run again"
    return (f"the last checkpoint in {out} is at step {step}; continue with: "
            f"contrafuse train {shlex.quote(args.method)} --out {shlex.quote(str(out))} --resume")


def run(args: argparse.Namespace) -> int:
    out = run_folder(args)
    if args.resume and args.config is None and (out / CHECKPOINT_NAME).is_file():
        cfg = _resumed_config(args, out)
    else:
        cfg = load_config(args.config, overrides_of(args), method=args.method)
    result = train(cfg, out, resume=args.resume, overwrite=args.overwrite)
    if result.weights is not None:
        print(f"trained {cfg.method} for {result.steps} steps; weights: {result.weights}")
    return 0
