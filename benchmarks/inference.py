"""Inference speed and peak memory on this machine: CS2Fusion, CoCoNet, ONNX Runtime.

Each CS2Fusion measurement runs in its own process so that its peak RSS is its own. Prints
seconds per pair (median of the repeats) and peak RSS for our memory-bounded banded inference
beside a plain eager forward of the same network, at 640x480 and 4000x3000; then runs
inference_coconet.py (CoCoNet against the official layout) and inference_onnx.py (ONNX
Runtime beside PyTorch) from this folder.

    python benchmarks/inference.py [--repeats 3] [--skip-large] [--only-cs2fusion]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _measure(mode: str, height: int, width: int, repeats: int) -> dict:
    import torch

    from contrafuse.models import create_model

    torch.manual_seed(0)
    model = create_model("cs2fusion", weights=None)  # speed does not depend on the weight values
    ir, vis = torch.rand(1, 1, height, width), torch.rand(1, 1, height, width)

    def once() -> None:
        if mode == "plain":
            with torch.no_grad():
                model(ir=ir, vis=vis)
        else:
            model.fuse(ir=ir, vis=vis)

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "all": times, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(mode: str, height: int, width: int, repeats: int) -> dict:
    command = [sys.executable, __file__, "--child", mode, str(height), str(width), str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true", help="skip the 4000x3000 run (several minutes)")
    parser.add_argument("--only-cs2fusion", action="store_true", help="skip the CoCoNet and ONNX Runtime parts")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, height, width, repeats = args.child
        print(json.dumps(_measure(mode, int(height), int(width), int(repeats))))
        return

    print(f"{'size':>10} {'method':<26} {'s/pair':>8} {'peak RSS MB':>12}")
    plain = _child("plain", 480, 640, args.repeats)
    ours = _child("banded", 480, 640, args.repeats)
    print(f"{'640x480':>10} {'plain eager forward':<26} {plain['seconds']:8.2f} {plain['peak_rss_mb']:12.0f}")
    print(f"{'640x480':>10} {'contrafuse (banded)':<26} {ours['seconds']:8.2f} {ours['peak_rss_mb']:12.0f}")
    print(f"speed-up at 640x480: {plain['seconds'] / ours['seconds']:.2f}x (target >= 1.3x); "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB (target <= 600 MB)")
    if not args.skip_large:
        large = _child("banded", 3000, 4000, 1)
        print(f"{'4000x3000':>10} {'contrafuse (banded)':<26} {large['seconds']:8.2f} {large['peak_rss_mb']:12.0f}")
        print(f"peak RSS at 4000x3000: {large['peak_rss_mb']:.0f} MB (target <= 2048 MB); "
              "the plain forward would need about 19 GB there and is not run")
    if not args.only_cs2fusion:
        for script in ("inference_coconet.py", "inference_onnx.py"):
            print(f"\n== {script}", flush=True)
            subprocess.run([sys.executable, str(Path(__file__).with_name(script))], check=True)


if __name__ == "__main__":
    main()
