"""Folder and video throughput: the pipelined runs against the plain one-at-a-time loop.

    PYTHONPATH=src python benchmarks/throughput.py [--models cs2fusion] [--pairs 42] [--rounds 2]
        [--batch-size 4] [--workers auto] [--frames 24] [--frame-size 640x480] [--skip-folder] [--skip-video]

* folder: every tno42 pair (``--pairs`` spread over them), read -> fuse -> write, by

  - ``loop``: the plain loop, one pair at a time, nothing overlapping (read both images,
    prepare the luma, one model call, colour and 8-bit rounding, write the PNG), and
  - ``pipelined``: :func:`contrafuse.fuse_folders` (reader/writer threads, same-size batches of
    ``--batch-size``, the default workers for the model);

* video: two lossless (ffv1) clips of ``--frames`` frames made like tests/test_video.py's, by
  the plain loop (decode a frame of each, fuse, encode) and by :func:`contrafuse.fuse_video`.

The variants run **interleaved** (``--rounds`` times loop then pipelined, the order swapped
each round) so that load from other processes falls on both alike; the speed-up is the ratio
of the medians. The pipelined outputs are compared byte for byte (folder PNGs) and frame for
frame (video) with the loop's.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

import contrafuse
from contrafuse.data import dataset_pairs
from contrafuse.fusion import FuseOptions, finish_pair, fuse_luma_batch, prepare_pair
from contrafuse.runtime import ModelRunner
from contrafuse.io import read_image, write_image
from contrafuse.models import create_model
from contrafuse.runtime import parallel_layout
from contrafuse.video import VideoWriter, read_frames


def folder_loop(pairs, out: Path, model) -> float:
    """The plain loop; seconds."""
    options = FuseOptions()
    runner = ModelRunner(model, device=torch.device("cpu"))
    start = time.perf_counter()
    for pair in pairs:
        prepared = prepare_pair(ir=read_image(pair.ir), vis=read_image(pair.vis), options=options)
        fused = fuse_luma_batch(runner, ir=[prepared.ir_luma], vis=[prepared.vis_luma])[0]
        write_image(out / f"{pair.name}.png", finish_pair(prepared, fused, options))
    return time.perf_counter() - start


def folder_pipelined(folders: tuple[Path, Path], out: Path, model, batch_size: int, workers: int | None) -> float:
    report = contrafuse.fuse_folders(ir=folders[0], vis=folders[1], out=out, model=model, device="cpu",
                                     batch_size=batch_size, workers=workers, progress=False)
    assert report.ok, report.failed
    return report.seconds


def make_clip(path: Path, frames: int, size: tuple[int, int], gray: bool, seed: int) -> Path:
    """As tests/test_video.py: moving gradients plus noise, lossless ffv1."""
    rng = np.random.default_rng(seed)
    height, width = size
    writer = VideoWriter(path, Fraction(10), width, height, "ffv1")
    yy, xx = np.mgrid[:height, :width]
    for t in range(frames):
        base = (128 + 100 * np.sin((xx + 3 * t) / 6.0) * np.cos(yy / 9.0) + rng.normal(0, 8, (height, width))).clip(0, 255)
        writer.write(np.stack([base, base, base] if gray else [base, base[::-1], 255 - base], -1).astype(np.uint8))
    return writer.close()


def video_loop(ir: Path, vis: Path, out: Path, model, size: tuple[int, int]) -> float:
    options = FuseOptions()
    runner = ModelRunner(model, device=torch.device("cpu"))
    start = time.perf_counter()
    writer = VideoWriter(out, Fraction(10), size[1], size[0], "ffv1")
    for ir_frame, vis_frame in zip(read_frames(ir), read_frames(vis)):
        prepared = prepare_pair(ir=ir_frame, vis=vis_frame, options=options)
        fused = fuse_luma_batch(runner, ir=[prepared.ir_luma], vis=[prepared.vis_luma])[0]
        writer.write(finish_pair(prepared, fused, options))
    writer.close()
    return time.perf_counter() - start


def video_pipelined(ir: Path, vis: Path, out: Path, model, batch_size: int, workers: int | None) -> float:
    return contrafuse.fuse_video(ir=ir, vis=vis, out=out, model=model, device="cpu", codec="ffv1",
                                 batch_size=batch_size, workers=workers, progress=False).seconds


def interleaved(rounds: int, loop, pipelined) -> tuple[list[float], list[float]]:
    times: dict[str, list[float]] = {"loop": [], "pipelined": []}
    for r in range(rounds):
        order = [("loop", loop), ("pipelined", pipelined)]
        for name, run in order if r % 2 == 0 else order[::-1]:
            times[name].append(run(r))
    return times["loop"], times["pipelined"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cs2fusion")
    parser.add_argument("--pairs", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", default="auto", help="pipelined workers: auto (the model's default) or a count")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--frame-size", default="640x480")
    parser.add_argument("--skip-folder", action="store_true")
    parser.add_argument("--skip-video", action="store_true")
    args = parser.parse_args()
    workers = None if args.workers == "auto" else int(args.workers)
    width, height = (int(v) for v in args.frame_size.split("x"))
    pairs = dataset_pairs("tno42", "test")
    pairs = [pairs[int(i * len(pairs) / args.pairs)] for i in range(min(args.pairs, len(pairs)))]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; pipelined: batch size {args.batch_size}, "
          f"workers {args.workers}; {args.rounds} interleaved rounds, median", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="contrafuse-throughput-") as scratch:
        scratch = Path(scratch)
        for name in args.models.split(","):
            model = create_model(name)
            from contrafuse.runtime import ModelRunner

            used = parallel_layout(ModelRunner(model, device=torch.device("cpu")), workers)
            if not args.skip_folder:
                folders = (scratch / "ir", scratch / "vis")
                for folder, role in zip(folders, ("ir", "vis")):
                    shutil.rmtree(folder, ignore_errors=True)
                    folder.mkdir()
                    for pair in pairs:  # links: the pipelined run reads the same files the loop does
                        (folder / Path(getattr(pair, role)).name).symlink_to(getattr(pair, role))
                # pair_folders matches stems: the tno42 files are named by their pair
                outs = {}

                def loop(r):
                    outs["loop"] = scratch / f"{name}-loop-{r}"
                    return folder_loop(pairs, outs["loop"], model)

                def piped(r):
                    outs["pipelined"] = scratch / f"{name}-pipelined-{r}"
                    return folder_pipelined(folders, outs["pipelined"], model, args.batch_size, workers)

                loop_s, piped_s = interleaved(args.rounds, loop, piped)
                same = all((outs["pipelined"] / f"{p.name}.png").read_bytes() == (outs["loop"] / f"{p.name}.png").read_bytes()
                           for p in pairs)
                rows.append((name, f"folder, tno42 ({len(pairs)} pairs)", "pairs/s", len(pairs) / statistics.median(loop_s),
                             len(pairs) / statistics.median(piped_s), used, "byte-identical" if same else "DIFFERENT"))
                print(f"  {name} folder: loop {loop_s}, pipelined {piped_s} s; identical: {same}", flush=True)
            if not args.skip_video:
                size = (height, width)
                ir = make_clip(scratch / f"{name}-ir.mkv", args.frames, size, True, 0)
                vis = make_clip(scratch / f"{name}-vis.mkv", args.frames, size, False, 1)
                loop_s, piped_s = interleaved(
                    args.rounds,
                    lambda r: video_loop(ir, vis, scratch / f"{name}-loop-{r}.mkv", model, size),
                    lambda r: video_pipelined(ir, vis, scratch / f"{name}-piped-{r}.mkv", model, args.batch_size, workers))
                same = all(np.array_equal(a, b) for a, b in zip(read_frames(scratch / f"{name}-loop-0.mkv"),
                                                                read_frames(scratch / f"{name}-piped-0.mkv"), strict=True))
                rows.append((name, f"video, {args.frames} frames {args.frame_size}", "frames/s", args.frames / statistics.median(loop_s),
                             args.frames / statistics.median(piped_s), used, "same frames" if same else "DIFFERENT"))
                print(f"  {name} video: loop {loop_s}, pipelined {piped_s} s; same frames: {same}", flush=True)
    print("\n| model | run | unit | one at a time | pipelined | speed-up | pipelined workers x threads | outputs |")
    print("|---|---|---|---:|---:|---:|---|---|")
    for name, run, unit, loop_rate, piped_rate, used, same in rows:
        print(f"| {name} | {run} | {unit} | {loop_rate:.3f} | {piped_rate:.3f} | {piped_rate / loop_rate:.2f}x | "
              f"{used[0]} x {used[1]} | {same} |")
    print(f"\n(batch size {args.batch_size})", file=sys.stderr)


if __name__ == "__main__":
    main()
