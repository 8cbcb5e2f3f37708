"""Deployment speed: seconds per pair and pairs per second for each model, image size, batch size,
backend and precision available on this machine, with the output difference from full precision.

    PYTHONPATH=src python benchmarks/deploy.py [--models cs2fusion,coconet] [--sizes 640x480,1920x1080]
        [--batches 1,8] [--repeats 3] [--budget-s 420] [--calibration-pairs 16] [--tensorrt] [--compile]
        [--only torch-fp32,onnxruntime-int8,...] [--cache-dir DIR] [--device auto|cpu|cuda]

Runs unchanged on a CPU machine and on a GPU machine. Variants (backend-precision):

* ``torch-fp32``, ``torch-bf16``, ``torch-fp16``: the pipeline's model call (``ModelRunner``:
  the models' ``fuse`` paths, autocast for bf16/fp16). fp16 is measured on CUDA only (on a CPU
  it runs, slower than fp32: ``--only torch-fp16`` to see).
* ``torch-fp16-compiled`` (``--compile``, CUDA): ``torch.compile`` of the plain forward.
* ``onnxruntime-fp32``: the exported graph on ONNX Runtime (CPU provider; CUDA provider on a GPU
  machine with onnxruntime-gpu).
* ``onnxruntime-int8``: the int8 export (CPU only), calibrated on ``--calibration-pairs``
  pairs of roadscene:train (not measured where that data is missing).
* ``tensorrt-fp32``, ``tensorrt-fp16`` (``--tensorrt``): ONNX Runtime's TensorRT provider
  (engines are built per shape and cached: the first run of each shape takes minutes).

One model call on a batch of identical pairs (TNO pair 01 resized, or the example pair) is
timed after a warm-up call: host-to-device copy, model, copy back (what the pipeline's compute
stage does; reading and writing overlap with it). Median of ``--repeats``, the variants of one
model, size and batch interleaved (each round times every variant once), so that their ratios
hold on a busy machine. The difference from
full precision (torch fp32, same size) is in grey levels (0-255): max and mean absolute, and
the share of pixels within 1 grey level. A measurement predicted to overrun ``--budget-s`` (from
the first time of the same variant, per pixel) is skipped and listed, and none starts once the
budget is spent; the default budget keeps a GPU run well inside 8 minutes (exports of the fp32
graphs included). The int8 calibration (CPU only, minutes on a small CPU) is not charged to the
budget; ``--cache-dir`` keeps the exported files for the next run.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from contrafuse.devices import describe_device, resolve_device
from contrafuse.io import read_image
from contrafuse.color import luma01
from contrafuse.models import create_model
from contrafuse.runtime import ModelRunner

HERE = Path(__file__).resolve().parent


@dataclass
class Row:
    model: str
    variant: str
    size: str
    batch: int
    seconds: float | None = None  # per pair
    max_diff: float | None = None
    mean_diff: float | None = None
    within1: float | None = None
    note: str = ""


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (height, width) = (480, 640)."""
    width, height = (int(v) for v in text.lower().split("x"))
    return height, width


def source_pair() -> tuple[np.ndarray, np.ndarray, str]:
    """Luma of TNO pair 01 when the shared data is here, else of the example pair; float32 in [0, 1]."""
    try:
        from contrafuse.data import dataset_pairs

        pair = dataset_pairs("tno42", "test")[0]
        return luma01(read_image(pair.ir), np.float32), luma01(read_image(pair.vis), np.float32), "TNO pair 01"
    except Exception:  # no shared data on this machine
        examples = HERE.parent / "examples"
        return (luma01(read_image(examples / "ir.png"), np.float32), luma01(read_image(examples / "vis.png"), np.float32),
                "the example pair")


def resized(luma: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(luma, mode="F").resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32).clip(0, 1)


def batch_of(luma: np.ndarray, batch: int) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(luma[None, None], batch, axis=0))


def model_call(runner: ModelRunner, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """One model call as the pipeline's compute stage makes it: copy in, run, copy out."""
    ir_t = torch.from_numpy(ir).to(runner.device)
    vis_t = torch.from_numpy(vis).to(runner.device)
    out = runner(ir=ir_t, vis=vis_t).cpu().numpy()
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)
    return out


def time_interleaved(runners: dict[str, ModelRunner], ir: np.ndarray, vis: np.ndarray,
                     repeats: int) -> dict[str, tuple[float, np.ndarray] | str]:
    """Median seconds of one call of each runner, after a warm-up call each, and its output.

    The repeats are interleaved (each round calls every runner once, in turn), so that load
    from other processes falls on all variants alike and their ratios stay meaningful.
    """
    outputs: dict[str, np.ndarray] = {}
    results: dict[str, tuple[float, np.ndarray] | str] = {}
    for name, runner in runners.items():
        try:
            outputs[name] = model_call(runner, ir, vis)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            results[name] = "out of GPU memory"
    times: dict[str, list[float]] = {name: [] for name in outputs}
    for _ in range(repeats):
        for name in outputs:
            start = time.perf_counter()
            model_call(runners[name], ir, vis)
            times[name].append(time.perf_counter() - start)
    results.update({name: (statistics.median(times[name]), outputs[name]) for name in outputs})
    return results


def grey_difference(out: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    diff = np.abs(np.clip(out[0, 0], 0, 1) - np.clip(reference, 0, 1)) * 255
    return float(diff.max()), float(diff.mean()), float((diff <= 1).mean())


def build_variants(model_name: str, device: torch.device, args: argparse.Namespace, cache: Path,
                   calibration: tuple[str, int, str | None] | None) -> dict[str, object]:
    """Variant name -> a ModelRunner, or a string saying why it is not available here."""
    from contrafuse.export import OnnxModel, available_providers, export_onnx

    on_gpu = device.type == "cuda"
    network = create_model(model_name, device=device)
    variants: dict[str, object] = {"torch-fp32": ModelRunner(network, device=device)}
    variants["torch-bf16"] = ModelRunner(network, device=device, precision="bf16")
    if on_gpu or "torch-fp16" in (args.only or []):
        variants["torch-fp16"] = ModelRunner(network, device=device, precision="fp16")
    if args.compile:
        variants["torch-fp16-compiled"] = (ModelRunner(network, device=device, precision="fp16", compile=True)
                                           if on_gpu else "compile is measured on CUDA only")
    providers = available_providers()
    if not providers:
        variants["onnxruntime-fp32"] = "onnxruntime not installed"
        return variants
    fp32_file = cache / f"{model_name}_fp32.onnx"
    if not fp32_file.exists():
        export_onnx(model_name, fp32_file)
    if on_gpu and "CUDAExecutionProvider" not in providers:
        variants["onnxruntime-fp32"] = "no CUDA provider (pip install 'contrafuse[gpu]')"
    else:
        variants["onnxruntime-fp32"] = ModelRunner(OnnxModel(fp32_file, device), device=device)
    if on_gpu:
        variants["onnxruntime-int8"] = "int8 is a CPU path"
    elif calibration is None:
        variants["onnxruntime-int8"] = "no calibration data here (roadscene:train)"
    else:
        spec, count, root = calibration
        int8_file = cache / f"{model_name}_int8_{count}.onnx"
        if not int8_file.exists():
            start = time.perf_counter()
            export_onnx(model_name, int8_file, precision="int8", calibration=spec, calibration_pairs=count, data_root=root)
            spent = time.perf_counter() - start
            args.calibration_seconds += spent  # not charged to the budget (CPU only; --cache-dir keeps the file)
            print(f"  [{model_name}: int8 export with {count} calibration pair(s) took {spent:.0f} s, not counted "
                  "in the budget]", flush=True)
        variants["onnxruntime-int8"] = ModelRunner(OnnxModel(int8_file, device), device=device)
    if args.tensorrt:
        for fp16 in (False, True):
            name = f"tensorrt-{'fp16' if fp16 else 'fp32'}"
            try:
                variants[name] = ModelRunner(OnnxModel(fp32_file, device, tensorrt=True, tensorrt_fp16=fp16),
                                             device=device, precision="fp16" if fp16 else None)
            except Exception as exc:  # no TensorRT here
                variants[name] = str(exc).split(";")[0]
    return variants


def calibration_source(count: int) -> tuple[str, int, str | None] | None:
    """roadscene:train when the shared data is here, else None (int8 is then not measured)."""
    try:
        from contrafuse.data import dataset_pairs

        dataset_pairs("roadscene", "train")
        return "roadscene:train", count, None
    except Exception:
        return None


def measure_model(model_name: str, device: torch.device, args: argparse.Namespace, cache: Path, deadline: float,
                  pair: tuple[np.ndarray, np.ndarray]) -> list[Row]:
    rows: list[Row] = []
    variants = build_variants(model_name, device, args, cache, calibration_source(args.calibration_pairs))
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only or k == "torch-fp32"}
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    references: dict[tuple[int, int], np.ndarray] = {}
    unit_cost: dict[str, float] = {}  # seconds per pixel of one pair, from the first measurement
    for size in sizes:
        ir_luma, vis_luma = resized(pair[0], size), resized(pair[1], size)
        for batch in batches:
            group: dict[str, ModelRunner] = {}
            group_rows: dict[str, Row] = {}
            planned = 0.0  # predicted seconds of the variants admitted to this group so far
            for name, runner in variants.items():
                row = Row(model_name, name, f"{size[1]}x{size[0]}", batch)
                rows.append(row)
                if isinstance(runner, str):
                    row.note = runner
                    continue
                if time.perf_counter() + planned > deadline + args.calibration_seconds:
                    row.note = "skipped: the budget is spent"
                    continue
                if name in unit_cost:
                    predicted = unit_cost[name] * size[0] * size[1] * batch * (args.repeats + 1)
                    if time.perf_counter() + planned + predicted > deadline + args.calibration_seconds:
                        row.note = f"skipped: would take ~{predicted:.0f} s, past the budget"
                        continue
                    planned += predicted
                group[name], group_rows[name] = runner, row
            if not group:
                continue
            results = time_interleaved(group, batch_of(ir_luma, batch), batch_of(vis_luma, batch), args.repeats)
            for name, result in results.items():
                row = group_rows[name]
                if isinstance(result, str):
                    row.note = result
                    continue
                seconds, out = result
                unit_cost.setdefault(name, seconds / (size[0] * size[1] * batch))
                row.seconds = seconds / batch
                if name == "torch-fp32" and size not in references:
                    references[size] = out[0, 0]
                if size in references:
                    row.max_diff, row.mean_diff, row.within1 = grey_difference(out, references[size])
                print(f"  {model_name:10s} {name:22s} {row.size:>9s} batch {batch}: {row.seconds:.4f} s/pair", flush=True)
    return rows


def print_table(rows: list[Row]) -> None:
    print("\n| model | backend-precision | size | batch | s/pair | pairs/s | max diff | mean diff | within 1 grey |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r.seconds is None:
            print(f"| {r.model} | {r.variant} | {r.size} | {r.batch} | - | - | - | - | {r.note} |")
            continue
        diff = ("-", "-", "-") if r.max_diff is None else (f"{r.max_diff:.2f}", f"{r.mean_diff:.3f}", f"{100 * r.within1:.2f} %")
        print(f"| {r.model} | {r.variant} | {r.size} | {r.batch} | {r.seconds:.4f} | {1 / r.seconds:.2f} | "
              f"{diff[0]} | {diff[1]} | {diff[2]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cs2fusion,coconet")
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting measurements after this (default 420)")
    parser.add_argument("--calibration-pairs", type=int, default=16)
    parser.add_argument("--tensorrt", action="store_true", help="also measure TensorRT (slow engine builds)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile at fp16 (CUDA)")
    parser.add_argument("--only", type=lambda s: s.split(","), help="variants to measure (torch-fp32 always)")
    parser.add_argument("--cache-dir", type=Path, help="keep the exported ONNX files here between runs")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    args.calibration_seconds = 0.0

    start = time.perf_counter()
    deadline = start + args.budget_s
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes per measurement: let cuDNN pick its fastest kernels
    ir, vis, source = source_pair()
    import contrafuse

    print(f"contrafuse {contrafuse.__version__}, torch {torch.__version__}, {describe_device(device)}, "
          f"{platform.processor() or platform.machine()}; input: {source}; median of {args.repeats} interleaved calls after a warm-up; "
          f"budget {args.budget_s:.0f} s", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as scratch:
        cache = args.cache_dir or Path(scratch)
        cache.mkdir(parents=True, exist_ok=True)
        for model_name in args.models.split(","):
            rows += measure_model(model_name, device, args, cache, deadline, (ir, vis))
    print_table(rows)
    print(f"\ntotal {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
