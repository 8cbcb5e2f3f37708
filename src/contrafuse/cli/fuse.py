"""``contrafuse fuse``: fuse one pair of files, or every pair of two folders."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..atomic import InputGuard, check_writable
from ..errors import ContrafuseError, RegistrationError
from ..io import is_video, pair_folders, write_image
from ..models import DEFAULT_MODEL
from ..options import BACKENDS as FUSE_BACKENDS
from ..options import Color, FuseOptions, Gamut, Precision, Rounding, parse_model_options
from ..registration import DEFAULT_MIN_CONFIDENCE, DIRECTION_CHOICES, FINE_STAGES, MODES, VERIFY_BELOW, Registration
from ..shards import current_shard

COLOR_CHOICES = [c.value for c in Color]
ROUNDING_CHOICES = [r.value for r in Rounding]
GAMUT_CHOICES = [g.value for g in Gamut]
PRECISION_CHOICES = [p.value for p in Precision]
BACKENDS = (*FUSE_BACKENDS, "tensorrt")  # TensorRT runs a .onnx --model as an OnnxModel


def add_speed_arguments(parser: argparse.ArgumentParser, workers_flag: str = "--workers") -> None:
    """The options of how fast the model runs: shared by ``fuse`` and ``bench`` (whose
    ``--workers`` counts metric processes, so its flag is ``--fuse-workers``)."""
    parser.add_argument("--precision", choices=PRECISION_CHOICES,
                        help="fp32 (default), fp16 / bf16 (PyTorch autocast: for GPUs; they also run on a CPU, slower), "
                        "int8 (an ONNX file from `contrafuse export --precision int8`; an exported file runs at its "
                        "own precision without this flag)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N",
                        help="same-size pairs or frames per model call (default 1; on a CPU at fp32 the outputs do "
                        "not change)")
    parser.add_argument(workers_flag, dest="fuse_workers", type=int, metavar="N",
                        help="model calls running at once on a CPU, sharing its threads (default: 2 on a CPU with 2+ "
                        "threads, 1 on CUDA)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the plain forward (CUDA; whole images; compiles once per image size)")


def add_ir_range_argument(parser: argparse.ArgumentParser) -> None:
    """``--ir-range``: how the infrared image is windowed (shared by ``fuse``, ``bench`` and ``eval``)."""
    parser.add_argument("--ir-range", default="auto", metavar="auto|full|LOW:HIGH|pLOW:pHIGH",
                        help="window of the infrared intensities mapped to black..white: auto (default: 8-bit and "
                        "full-range 16-bit images as they are; narrow-band 16-bit counts and float TIFFs between "
                        "their 0.5 and 99.5 percentiles), full (the whole 8/16-bit scale), LOW:HIGH in the image's "
                        "units (counts or degrees, e.g. 7000:9000), or pLOW:pHIGH percentiles (e.g. p1:p99)")


def add_align_arguments(parser: argparse.ArgumentParser) -> None:
    """``--align``, ``--transform``, ``--direction``, ``--align-every``: register pairs before fusing."""
    parser.add_argument("--align", choices=MODES, default="none",
                        help="register each pair first (folders: per pair; videos: on the first frame, see "
                        "--align-every); none (default) fuses the pair as it is. A pair that cannot be registered "
                        "fails, naming the pair")
    parser.add_argument("--transform", type=Path, metavar="FILE",
                        help="apply a saved transform (the .json `contrafuse align` writes) to every pair or frame")
    parser.add_argument("--direction", choices=DIRECTION_CHOICES,
                        help="which image is warped into the other's frame (default ir-to-vis, or the --transform's)")
    parser.add_argument("--align-every", type=int, default=0, metavar="N",
                        help="videos with --align: re-estimate every N frames, each from the last (default 0: once, "
                        "on the first frame)")
    parser.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE, metavar="C",
                        help=f"with --align: refuse pairs whose confidence is lower (default {DEFAULT_MIN_CONFIDENCE}; "
                        "see docs/registration.md)")
    parser.add_argument("--verify", action="store_true",
                        help="with --align: also register each pair the other way round and refuse a disagreement "
                        "(twice the registration time; recommended for medical pairs)")
    parser.add_argument("--verify-below", type=float, default=VERIFY_BELOW, metavar="C",
                        help=f"with --align, without --verify: that check for pairs whose confidence is below C "
                        f"(default {VERIFY_BELOW}; 0: never, and then raise --min-confidence to 0.30)")
    parser.add_argument("--fine", choices=FINE_STAGES, default="ecc",
                        help="with --align: the last refinement stage, ecc (default) or mattes (Mattes mutual "
                        "information, SimpleITK: pip install 'contrafuse[itk]')")


def add_model_option_argument(parser: argparse.ArgumentParser) -> None:
    """``--model-option KEY=VALUE`` (repeatable): keyword options of the registered model's builder."""
    parser.add_argument("--model-option", dest="model_options", action="append", metavar="KEY=VALUE",
                        help="an option of the registered model, repeatable (cs2fusion: border=replicate, the default, "
                        "or border=zeros, the authors' zero-padded borders); see `contrafuse models`")


def speed_options(args: argparse.Namespace) -> dict:
    """The FuseOptions fields of :func:`add_speed_arguments`."""
    if args.batch_size < 1:
        raise ContrafuseError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.fuse_workers is not None and args.fuse_workers < 1:
        raise ContrafuseError(f"--workers must be >= 1, got {args.fuse_workers}")
    return {"precision": args.precision, "batch_size": args.batch_size, "workers": args.fuse_workers,
            "compile": args.compile}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fuse",
        description="Fuse IR with VIS. Files give one output file; folders are paired by file stem; "
        "two videos (.mp4, .mkv, ...) are fused frame by frame.",
    )
    parser.add_argument("--ir", required=True, type=Path, help="infrared image or folder (medical: CT/PET/SPECT)")
    parser.add_argument("--vis", required=True, type=Path, help="visible image or folder (medical: MRI)")
    parser.add_argument("--out", required=True, type=Path, help="output file (pair) or folder (folders)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"registered model (default: {DEFAULT_MODEL}); see `contrafuse models`")
    parser.add_argument("--weights", type=Path, help="weights file (.safetensors or an author's .pth) instead of the shipped ones")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--color", choices=COLOR_CHOICES, default="auto", help="colour output (default auto)")
    parser.add_argument("--rounding", choices=ROUNDING_CHOICES, default="round", help="float-to-integer rule; truncate = reference code")
    parser.add_argument("--gamut", choices=GAMUT_CHOICES, default="auto",
                        help="out-of-range colours: clip channels, or keep the hue (auto: hue for pseudo-colour --ir)")
    parser.add_argument("--resize", action="store_true", help="resample IR to the VIS size when they differ")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--skip-existing", action="store_true",
                        help="folder mode: resume an interrupted run (pairs whose output exists are skipped, stale "
                        "temporary files removed)")
    parser.add_argument("--suffix", default=".png", help="output suffix in folder mode (default .png)")
    parser.add_argument("--fps", type=float, default=25.0,
                        help="frame rate of image-sequence folders fused into a video (--out VIDEO; default 25)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="auto (default for a registered model: on a CPU, cs2fusion and coconet run by ONNX "
                        "Runtime through an export cached in ~/.cache/contrafuse, else torch); torch (the PyTorch "
                        "reference path); onnxruntime (the cached export, or a .onnx --model from `contrafuse export`; "
                        "the default for a .onnx file; CPU, or CUDA with --device cuda); tensorrt (a .onnx --model on "
                        "ONNX Runtime's TensorRT provider, CUDA)")
    add_model_option_argument(parser)
    add_ir_range_argument(parser)
    add_align_arguments(parser)
    add_speed_arguments(parser)
    parser.set_defaults(func=run, on_interrupt=interrupted)


def _weights(args: argparse.Namespace) -> str | Path:
    return args.weights if args.weights is not None else "default"


def options_of(args: argparse.Namespace) -> FuseOptions:
    """The pipeline settings the command line asks for."""
    if args.align_every < 0:
        raise ContrafuseError(f"--align-every must be >= 0, got {args.align_every}")
    if args.align != "none" and args.transform is not None:
        raise ContrafuseError(f"--align {args.align} and --transform {args.transform} contradict each other: "
                              "estimate, or apply the saved transform")
    if args.align_every and args.align == "none":
        raise ContrafuseError("--align-every needs --align MODE")
    if args.verify and args.align == "none":
        raise ContrafuseError("--verify needs --align MODE (a saved --transform is applied as it is)")
    return FuseOptions(color=args.color, rounding=args.rounding, gamut=args.gamut, resize=args.resize,
                       ir_range=args.ir_range, align=args.align, transform=args.transform, direction=args.direction,
                       align_every=args.align_every, min_confidence=args.min_confidence, verify=args.verify,
                       verify_below=args.verify_below,
                       fine=args.fine, backend="auto" if args.backend == "tensorrt" else args.backend,
                       **speed_options(args))


def _model(args: argparse.Namespace):
    """The ``model`` argument: a registered name, an .onnx path, or an OnnxModel on TensorRT."""
    if args.backend != "tensorrt":
        return args.model
    from ..devices import resolve_device
    from ..export import OnnxModel

    return OnnxModel(args.model, resolve_device(args.device), tensorrt=True, tensorrt_fp16=args.precision == "fp16")


def _model_arguments(args: argparse.Namespace) -> dict:
    return {"model": _model(args), "weights": _weights(args), "device": args.device, "options": options_of(args),
            "model_options": parse_model_options(args.model_options)}


def _check_backend(args: argparse.Namespace) -> None:
    """Check the backend against --model; without --backend, a .onnx file says it is one for onnxruntime."""
    is_onnx = args.model.lower().endswith(".onnx")
    if args.backend is None:
        args.backend = "onnxruntime" if is_onnx else "auto"
    if args.backend == "tensorrt" and not is_onnx:
        raise ContrafuseError(f"--backend tensorrt needs --model FILE.onnx (see `contrafuse export`), got {args.model!r}")
    if is_onnx and args.weights is not None:
        raise ContrafuseError(f"--weights {args.weights}: an ONNX model carries its weights; drop --weights")
    if args.backend == "torch" and is_onnx:
        raise ContrafuseError(f"--model {args.model}: an ONNX file needs --backend onnxruntime")
    if args.skip_existing and args.overwrite:
        raise ContrafuseError("--skip-existing and --overwrite contradict each other; choose one")


def run(args: argparse.Namespace) -> int:
    _check_backend(args)
    if is_video(args.ir) or is_video(args.vis) or is_video(args.out):
        return _run_video(args)
    if args.ir.is_dir() != args.vis.is_dir():
        raise ContrafuseError(f"--ir {args.ir} and --vis {args.vis}: give two files or two folders")
    if args.ir.is_dir():
        return _run_folders(args)
    if args.skip_existing:
        raise ContrafuseError("--skip-existing applies to folder mode (--ir and --vis folders)")
    out = args.out / f"{args.vis.stem}.png" if args.out.is_dir() else args.out
    InputGuard([("infrared input", args.ir), ("visible input", args.vis)]).check(out)
    check_writable(out, overwrite=args.overwrite)  # before the work, not after it
    from ..session import Fuser  # torch: imported by the commands that fuse, not by --help

    fuser = Fuser(**_model_arguments(args))
    try:
        fused = fuser.pair(ir=args.ir, vis=args.vis)
    except RegistrationError as exc:  # the pair's failure (exit 1, as `contrafuse align`), not a usage error
        print(f"contrafuse fuse: failed: {exc}", file=sys.stderr)
        return 1
    write_image(out, fused, overwrite=args.overwrite)
    print(f"wrote {out}{_confidence_note(args, fuser.last_registration)}")
    return 0


def _check_something_pairs(args: argparse.Namespace) -> None:
    """Refuse a folder run with no pair to fuse (empty folders, or no stem in common), before the model loads."""
    pairs, unmatched = pair_folders(ir=args.ir, vis=args.vis)
    if pairs:
        return
    if not unmatched:
        raise ContrafuseError(f"--ir {args.ir} and --vis {args.vis} hold no images (PNG, JPEG, BMP, TIFF): "
                              "nothing to fuse")
    for path in unmatched:
        print(f"unmatched (no partner with the same stem): {path}", file=sys.stderr)
    raise ContrafuseError(f"no image of --ir {args.ir} has a partner with the same file stem in --vis {args.vis} "
                          f"({len(unmatched)} unmatched, listed above): nothing to fuse")


def _confidence_note(args: argparse.Namespace, registration: Registration | None) -> str:
    """`` (confidence 0.412)`` for an estimated registration, else nothing."""
    if args.align == "none" or registration is None:
        return ""
    return f" (aligned, confidence {registration.confidence:.3f})"


def _run_folders(args: argparse.Namespace) -> int:
    _check_something_pairs(args)
    from ..fusion import fuse_folders

    report = fuse_folders(ir=args.ir, vis=args.vis, out=args.out, overwrite=args.overwrite, suffix=args.suffix,
                          skip_existing=args.skip_existing, **_model_arguments(args))
    status = 0 if report.ok else 1
    if not current_shard().is_main:  # under torchrun, rank 0 reports the whole run
        return status
    for path in report.cleaned:
        print(f"removed a stale temporary file of an earlier run: {path}", file=sys.stderr)
    for path in report.unmatched:
        print(f"unmatched (no partner with the same stem): {path}", file=sys.stderr)
    for stem, confidence in sorted(report.confidence.items()):
        print(f"{stem}: aligned, confidence {confidence:.3f}")
    for stem, message in report.failed:
        print(f"failed {stem}: {message}", file=sys.stderr)
    print(f"fused {len(report.written)} pair(s) into {args.out}; {len(report.failed)} failed, {len(report.skipped)} "
          f"skipped (output exists), {len(report.unmatched)} unmatched; {report.seconds:.1f} s, "
          f"{report.pairs_per_second:.2f} pairs/s ({report.setup})")
    return status


def interrupted(args: argparse.Namespace) -> str:
    """What an interrupted ``fuse`` finished, and (folders) the command that continues it."""
    if not (args.ir.is_dir() and args.vis.is_dir()):
        return f"nothing was written to {args.out} (an output appears only once it is complete)"
    pairs, _ = pair_folders(ir=args.ir, vis=args.vis)
    done = sum((args.out / f"{pair.name}{args.suffix}").is_file() for pair in pairs)
    tokens = [t for t in args.command_line if t != "--overwrite"]
    if "--skip-existing" not in tokens:
        tokens.append("--skip-existing")
    return (f"{done} of {len(pairs)} output(s) in {args.out} are complete; continue with: "
            f"contrafuse {shlex.join(tokens)}")


def _run_video(args: argparse.Namespace) -> int:
    from ..video import fuse_video

    if not all(is_video(path) or path.is_dir() for path in (args.ir, args.vis)) or not is_video(args.out):
        raise ContrafuseError(f"--ir {args.ir}, --vis {args.vis}, --out {args.out}: video fusion needs two videos (or "
                              "image-sequence folders) and a video output")
    if args.fps <= 0:
        raise ContrafuseError(f"--fps must be positive, got {args.fps}")
    if args.skip_existing:
        raise ContrafuseError("--skip-existing applies to folder mode (--ir and --vis folders)")
    try:
        report = fuse_video(ir=args.ir, vis=args.vis, out=args.out, overwrite=args.overwrite, fps=args.fps,
                            **_model_arguments(args))
    except RegistrationError as exc:
        print(f"contrafuse fuse: failed: {exc}", file=sys.stderr)
        return 1
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for frame, confidence in report.estimated:
        print(f"frame {frame}: aligned, confidence {confidence:.3f}")
    for frame, reason in report.kept:
        print(f"frame {frame}: re-estimate refused ({reason}); kept the last good transform", file=sys.stderr)
    print(f"wrote {report.path}: {report.frames} frame(s) in {report.seconds:.1f} s, {report.frames_per_second:.2f} "
          f"frames/s ({report.setup})" + (f"; {len(report.kept)} refused re-estimate(s)" if report.kept else ""))
    return 0
