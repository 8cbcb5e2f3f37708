"""int8 recipes against full precision: speed-up over ONNX Runtime fp32 and the 9 metrics on tno42.

    PYTHONPATH=src python benchmarks/int8_accuracy.py [--models cs2fusion,coconet]
        [--variants shipped,percentile,...] [--pairs 42] [--repeats 7] [--size 640x480] [--cache-dir DIR]
        [--int8-weights FILE]

For each model: the shipped fp32 weights are exported once (the default backend's cached
export, in the user's cache folder; ``--cache-dir`` holds the int8 files); each variant is a change of the
model's int8 recipe (its registry entry's ``capabilities.int8``; see :data:`VARIANTS`),
quantised with it (from ``--int8-weights`` instead when given, e.g. a quantisation-aware fine-tune
from ``benchmarks/int8_qat.py``; the reference stays the shipped fp32 weights). Then:

* speed: one call at ``--size`` (TNO pair 01 resized), ONNX Runtime fp32 and every variant,
  **interleaved** (each repeat times every session once, in turn), so that load from other
  processes falls on all of them alike; the speed-up is the ratio of medians;
* accuracy: every tno42 pair fused by torch fp32 (the reference: what ``fuse`` and ``bench``
  give by default), by ONNX Runtime fp32 and by each variant, rounded to 8 bits as ``fuse``
  writes it, and scored with EN SD SF AG MI SCD VIF Qabf SSIM (cddfuse convention); the
  deviation is ``|mean_variant - mean_fp32| / |mean_fp32|`` of the 42-pair mean, in percent;
  and the lowest PSNR of a variant's output against the fp32 output over the pairs.

Needs the shared data (tno42, roadscene:train for calibration) and onnx/onnxruntime.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from contrafuse import metrics
from contrafuse.data import dataset_pairs
from contrafuse.export import OnnxModel, with_metadata
from contrafuse.fusion import FuseOptions, finish_pair, fuse_luma_batch, prepare_pair
from contrafuse.io import read_image
from contrafuse.models import create_model
from contrafuse.onnx_cache import cached_export
from contrafuse.quantization import calibration_pairs, float_activations, quantize_int8, recipe_for
from contrafuse.runtime import ModelRunner
from deploy import resized, source_pair  # benchmarks/deploy.py, next to this file

NAMES = ["EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM"]

# variant name -> (changes to the model's recipe, calibration pairs); "shipped" is the recipe as it is
VARIANTS: dict[str, tuple[dict, int]] = {
    "shipped": ({}, 16),
    "minmax-4": ({"method": "MinMax"}, 4),
    "minmax-32": ({"method": "MinMax"}, 32),
    "percentile": ({"method": "Percentile", "percentile": 99.999}, 16),
    "percentile-99.99": ({"method": "Percentile", "percentile": 99.99}, 16),
    "entropy": ({"method": "Entropy"}, 16),
    "per-tensor": ({"per_channel": False}, 16),
    "reduce-range": ({"reduce_range": True}, 16),
    "symmetric": ({"activation_symmetric": True}, 16),
    "qoperator": ({"quant_format": "QOperator"}, 16),
    "minmax": ({"method": "MinMax"}, 16),
    "full-leaky-ranges": ({"leaky_positive_ranges": False}, 16),
    "positive-leaky-ranges": ({"leaky_positive_ranges": True}, 16),
    "no-float-activations": ({"float_activations": ()}, 16),  # the recipe before 2026-12-07
    "mixed-16": ({}, 16),  # calibrated on CALIBRATION's pairs
}


# variant name -> calibration pairs other than the default roadscene:train ones (count from VARIANTS)
CALIBRATION = {"mixed-16": "roadscene:train+llvip:train"}


def keep(model: str, extra: tuple[str, ...]) -> dict:
    return {"keep_float": recipe_for(model).keep_float + extra}


# activation-name fragments left float32 in addition to the recipe's (variants "float-...")
EXTRA_FLOAT = {
    "cs2fusion": {
        "float-input": ("/model/Pad_",),
        "float-first-decoder": ("/model/Pad_", "layers.0/Conv_output_0", "decoder.2/Conv_output_0", "decoder.1/Conv_output_0"),
    },
    "coconet": {
        "float-input": ("/model/Pad",),
    },
}


def extra_changes(model: str, name: str) -> dict:
    if name in EXTRA_FLOAT.get(model, {}):
        return {"float_activations": tuple(dict.fromkeys(recipe_for(model).float_activations + EXTRA_FLOAT[model][name]))}
    return keep(model, EXTRA_KEEP[model][name])


# node-name fragments kept float32 in addition to the recipe's, per model (tried as variants "keep-...")
EXTRA_KEEP = {
    "cs2fusion": {
        "keep-decoder": ("decoder.",),
        "keep-first": ("layers.0/",),
        "keep-decoder2": ("decoder.2/",),
        "keep-ddm": ("/ddm.",),
    },
    "coconet": {
        "keep-dec1": ("/dec1/",),
        "keep-enc1": ("/enc1/",),
    },
}


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return height, width


def variant_changes(model: str, name: str) -> tuple[dict, int]:
    """Changes to ``model``'s recipe and the number of calibration pairs of variant ``name``."""
    if "+" in name:  # combinations: "percentile+keep-decoder"
        changes, count = {}, 16
        for part in name.split("+"):
            part_changes, part_count = variant_changes(model, part)
            changes = {**changes, **part_changes}
            count = part_count if part_count != 16 else count
        return changes, count
    return VARIANTS[name] if name in VARIANTS else (extra_changes(model, name), 16)


def file_key(*parts: object) -> str:
    """12 hex digits over what a cached file depends on, so that a changed recipe, weights file
    or runtime never reuses a stale one."""
    import onnxruntime

    digest = hashlib.sha256(repr((*parts, onnxruntime.__version__)).encode())
    return digest.hexdigest()[:12]


def quantised(model: str, fp32_bytes: bytes, size_multiple: int, name: str, cache: Path) -> Path:
    """The int8 file of variant ``name`` (cached under a key of the fp32 graph, the recipe and the runtime)."""
    changes, count = variant_changes(model, name)
    recipe = dataclasses.replace(recipe_for(model), **changes)
    spec = CALIBRATION.get(name, "roadscene:train")
    path = cache / f"{model}_int8_{name}_{file_key(hashlib.sha256(fp32_bytes).hexdigest(), recipe, count, spec)}.onnx"
    if path.exists():
        return path
    if set(changes) <= {"float_activations"} and count == 16 and recipe.float_activations and name not in CALIBRATION:
        # float activations are taken out after calibration: one calibrated file serves every such variant
        calibrated = quantised(model, fp32_bytes, size_multiple, "no-float-activations", cache).read_bytes()
        path.write_bytes(float_activations(calibrated, recipe.float_activations))
        return path
    pairs = calibration_pairs(spec, count)
    start = time.perf_counter()
    data = quantize_int8(fp32_bytes, recipe, pairs, size_multiple)
    print(f"  [{model} {name}: quantised in {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    path.write_bytes(with_metadata(data, {"contrafuse_precision": "int8", "size_multiple": str(size_multiple)}))
    return path


def scores(runner: ModelRunner, prepared: list, pairs_pixels: list) -> tuple[dict[str, float], list[np.ndarray]]:
    """Means over the pairs of the 9 metrics of the runner's 8-bit outputs, and the outputs."""
    rows, outputs = [], []
    for prep, (ir, vis) in zip(prepared, pairs_pixels):
        fused = fuse_luma_batch(runner, ir=[prep.ir_luma], vis=[prep.vis_luma])[0]
        out = finish_pair(prep, fused, FuseOptions(color="gray"))
        rows.append(metrics.compute(out, ir=ir, vis=vis, names=NAMES))
        outputs.append(out)
    return {n: float(np.mean([r[n] for r in rows])) for n in NAMES}, outputs


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of one 8-bit image against another (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def interleaved_seconds(runners: dict[str, ModelRunner], ir: np.ndarray, vis: np.ndarray, repeats: int) -> dict[str, float]:
    ir_t, vis_t = (torch.from_numpy(np.ascontiguousarray(a[None, None])) for a in (ir, vis))
    for runner in runners.values():
        runner(ir=ir_t, vis=vis_t)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner(ir=ir_t, vis=vis_t)
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cs2fusion,coconet")
    parser.add_argument("--variants", default="shipped",
                        help="comma-separated variants for every model, or per model: 'cs2fusion=a,b;coconet=c'")
    parser.add_argument("--data", default="tno42:test",
                        help="comma-separated NAME:SPLIT sets scored (default tno42:test; choose recipes on "
                             "llvip:test,m3fd:test,fmb:test, the cross-sensor validation pairs)")
    parser.add_argument("--pairs", type=int, default=42, help="N pairs spread over the sets (default 42: all of tno42)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/contrafuse-int8-accuracy"))
    parser.add_argument("--int8-weights", type=Path, default=None,
                        help="weights file the int8 variants are quantised from (e.g. a quantisation-aware "
                             "fine-tune); the fp32 reference stays the shipped weights")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--score-ort-fp32", action="store_true",
                        help="also score ONNX Runtime fp32 on tno42 (it matches torch fp32 to 0.00 %%; off to save time)")
    args = parser.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    cpu = torch.device("cpu")
    pairs = [p for spec in args.data.split(",") for p in dataset_pairs(*spec.split(":", 1))]
    pairs = [pairs[int(i * len(pairs) / args.pairs)] for i in range(min(args.pairs, len(pairs)))]  # spread evenly
    pixels = [(read_image(p.ir), read_image(p.vis)) for p in pairs]
    prepared = [prepare_pair(ir=ir, vis=vis) for ir, vis in pixels]
    size = parse_size(args.size)
    source = source_pair()
    ir_speed, vis_speed = resized(source[0], size), resized(source[1], size)
    per_model = dict(part.split("=", 1) for part in args.variants.split(";")) if "=" in args.variants else {}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(pairs)} pairs of {args.data}; speed at {args.size}, "
          f"median of {args.repeats} interleaved calls after a warm-up", flush=True)
    table = []
    for model in args.models.split(","):
        network = create_model(model, device=cpu)
        fp32_path = cached_export(model, network)  # the default backend's export, in the user's cache folder
        fp32 = OnnxModel(fp32_path, cpu)
        import onnx

        int8_source = cached_export(model, create_model(model, args.int8_weights, device=cpu)) if args.int8_weights else fp32_path
        proto = onnx.load(str(int8_source))
        del proto.metadata_props[:]  # the variants get their own
        fp32_bytes = proto.SerializeToString()
        runners = {"onnxruntime-fp32": ModelRunner(fp32, device=cpu)}
        for name in (per_model[model] if per_model else args.variants).split(","):
            runners[name] = ModelRunner(OnnxModel(quantised(model, fp32_bytes, fp32.size_multiple, name, args.cache_dir), cpu),
                                        device=cpu)
        seconds = interleaved_seconds(runners, ir_speed, vis_speed, args.repeats)
        reference = None
        if not args.no_accuracy:
            start = time.perf_counter()
            reference, reference_outputs = scores(ModelRunner(network, device=cpu), prepared, pixels)
            print(f"  [{model} torch fp32 on {args.data}: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
        for name, runner in runners.items():
            row = {"model": model, "variant": name, "seconds": seconds[name],
                   "speedup": seconds["onnxruntime-fp32"] / seconds[name]}
            if reference is not None and (name != "onnxruntime-fp32" or args.score_ort_fp32):
                values, outputs = scores(runner, prepared, pixels)
                per_pair = [psnr(out, ref) for out, ref in zip(outputs, reference_outputs)]
                row["psnr"], row["psnr_median"] = min(per_pair), float(np.median(per_pair))
                row["psnr_pair"] = pairs[int(np.argmin(per_pair))].name
                row["dev"] = {n: 100 * abs(values[n] - reference[n]) / abs(reference[n]) for n in NAMES}
                row["signed"] = {n: 100 * (values[n] - reference[n]) / abs(reference[n]) for n in NAMES}
            table.append(row)
            print(f"  {model} {name}: {row['seconds']:.3f} s, x{row['speedup']:.2f}"
                  + (f", worst {max(row['dev'].values()):.2f} %" if "dev" in row else ""), flush=True)
    print("\n| model | variant | s at " + args.size + " | speed-up vs ORT fp32 | "
          + " | ".join(NAMES) + " | worst | lowest PSNR vs fp32 (pair) | median PSNR |")
    print("|---|---|---:|---:|" + "---:|" * (len(NAMES) + 3))
    for row in table:
        cells = ([f"{row['signed'][n]:+.2f}" for n in NAMES] + [f"{max(row['dev'].values()):.2f}",
                 f"{row['psnr']:.1f} dB ({row['psnr_pair']})", f"{row['psnr_median']:.1f} dB"]
                 if "dev" in row else ["-"] * 12)
        print(f"| {row['model']} | {row['variant']} | {row['seconds']:.3f} | {row['speedup']:.2f}x | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
