"""Which int8 activations cost the most accuracy: each quantised activation of the shipped recipe
taken back to float32 alone, then the worst ones together, with the speed-up that remains.

    PYTHONPATH=src python benchmarks/int8_sensitivity.py [--model cs2fusion] [--pairs 6] [--top 8]
        [--threads 1] [--cache-dir DIR]

The pairs are cross-sensor validation pairs (``llvip:test``, ``m3fd:test``, ``fmb:test``, spread
evenly), never the test sets the accuracy table reports on. For every activation that the shipped
int8 graph quantises (a QuantizeLinear whose input is not a weight), the QuantizeLinear /
DequantizeLinear pair is removed, so its consumers read the float tensor (ONNX Runtime then runs
them in float32). The score is the PSNR of the 8-bit output against the ONNX Runtime fp32 output
over all the pairs (one MSE), in dB, on central crops (``--crop``) to keep the sweep short. Then the activations are taken back greedily, the worst
first, and each step prints its PSNR and its speed against ONNX Runtime fp32 at 640x480.
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from contrafuse.data import dataset_pairs
from contrafuse.models import create_model
from contrafuse.onnx_cache import cached_export
from contrafuse.quantization import (calibration_feeds, calibration_pairs, quantize_int8, quantized_activations,
                                     recipe_for, without_quantization)
from deploy import resized, source_pair  # benchmarks/deploy.py, next to this file
from int8_accuracy import file_key

VALIDATION = ("llvip:test", "m3fd:test", "fmb:test")


def validation_pairs(count: int) -> list:
    pairs = [p for spec in VALIDATION for p in dataset_pairs(*spec.split(":"))]
    return [pairs[int(i * len(pairs) / count)] for i in range(min(count, len(pairs)))]


def central_crop(feeds: dict[str, np.ndarray], side: int) -> dict[str, np.ndarray]:
    """The central ``side`` x ``side`` crop of each input (all of it when smaller, or side 0)."""
    if not side:
        return feeds
    h, w = next(iter(feeds.values())).shape[-2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return {k: np.ascontiguousarray(v[..., top:top + side, left:left + side]) for k, v in feeds.items()}


def session(data: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # a removed Q/DQ pair leaves unused initialisers: ORT warns about each
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def outputs(sess: ort.InferenceSession, feeds: list[dict]) -> list[np.ndarray]:
    return [np.clip(np.rint(sess.run(None, f)[0] * 255), 0, 255) for f in feeds]


def psnr(outs: list[np.ndarray], refs: list[np.ndarray]) -> float:
    mse = np.mean([np.mean((o - r) ** 2) for o, r in zip(outs, refs)])
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def seconds(sess: ort.InferenceSession, feed: dict, repeats: int) -> float:
    sess.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cs2fusion")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--crop", type=int, default=256, help="score on central crops of this side (0: whole images)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/contrafuse-int8-sensitivity"))
    args = parser.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    fp32 = onnx.load(str(cached_export(args.model, create_model(args.model, device="cpu"))))
    multiple = int({p.key: p.value for p in fp32.metadata_props}.get("size_multiple", "1"))
    fp32_bytes = fp32.SerializeToString()
    fp32_digest = hashlib.sha256(fp32_bytes).hexdigest()
    int8_path = args.cache_dir / f"{args.model}_int8_{file_key(fp32_digest, recipe_for(args.model))}.onnx"
    if not int8_path.exists():
        int8_path.write_bytes(quantize_int8(fp32_bytes, recipe_for(args.model),
                                            calibration_pairs(), multiple))
    int8 = int8_path.read_bytes()
    pairs = validation_pairs(args.pairs)
    feeds = [central_crop(f, args.crop) for f in calibration_feeds(pairs, multiple)]
    references = outputs(session(fp32_bytes, args.threads), feeds)
    print(f"{args.model}: {len(pairs)} validation pairs ({', '.join(p.name for p in pairs)})")
    print(f"shipped int8: {psnr(outputs(session(int8, args.threads), feeds), references):.2f} dB")

    gains = []
    for tensor in quantized_activations(int8):
        value = psnr(outputs(session(without_quantization(int8, {tensor}), args.threads), feeds), references)
        gains.append((value, tensor))
        print(f"  float {tensor}: {value:.2f} dB", flush=True)
    gains.sort(reverse=True)

    ir, vis, _ = source_pair()
    speed_feed = {role: resized(image, (480, 640))[None, None] for role, image in (("ir", ir), ("vis", vis))}
    base = seconds(session(fp32_bytes, args.threads), speed_feed, args.repeats)
    print("\n| float32 activations (worst first) | PSNR vs fp32, dB | speed-up vs ORT fp32 |\n|---|---:|---:|")
    chosen: set[str] = set()
    for k in range(args.top + 1):
        if k:
            chosen.add(gains[k - 1][1])
        data = without_quantization(int8, chosen)
        value = psnr(outputs(session(data, args.threads), feeds), references)
        speed = base / seconds(session(data, args.threads), speed_feed, args.repeats)
        print(f"| {k}{': ' + gains[k - 1][1] if k else ' (shipped)'} | {value:.2f} | {speed:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
