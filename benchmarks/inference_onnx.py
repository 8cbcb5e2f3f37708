"""CS2Fusion CPU inference: ONNX Runtime beside PyTorch, one 640x480 pair, same weights.

Exports CS2Fusion's plain forward with ``contrafuse.export.export_onnx`` (dynamic H/W, opset
17, checked against PyTorch on odd sizes), then times per pair, after one warm-up each:

* ``torch forward``: ``model(ir=ir, vis=vis)`` under ``inference_mode`` (what the export holds);
* ``torch fuse``: the banded ``model.fuse`` the image pipeline uses;
* ``onnxruntime``: the exported graph, same thread count as PyTorch.

Prints the median seconds per pair and the ratio to ONNX Runtime. Random weights unless
--weights is given (the timing does not depend on the values).

    PYTHONPATH=src python benchmarks/inference_onnx.py [--weights W] [--height 480 --width 640 --repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run`` over ``repeats`` calls, after one untimed warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="CS2Fusion weights (.safetensors or the authors' .pth); default random")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import onnxruntime as ort

    from contrafuse.export import export_onnx
    from contrafuse.models import create_model

    torch.manual_seed(0)
    model = create_model("cs2fusion", weights=args.weights)
    threads = torch.get_num_threads()
    generator = torch.Generator().manual_seed(1)
    ir, vis = (torch.rand(1, 1, args.height, args.width, generator=generator) for _ in range(2))
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(model, Path(folder) / "cs2fusion.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {"ir": ir.numpy(), "vis": vis.numpy()}

    with torch.inference_mode():
        reference = model(ir=ir, vis=vis).numpy()
        difference = float(np.abs(session.run(["fused"], feeds)[0] - reference).max())
        timings = {
            "torch forward": median_seconds(lambda: model(ir=ir, vis=vis), args.repeats),
            "torch fuse (banded)": median_seconds(lambda: model.fuse(ir=ir, vis=vis), args.repeats),
        }
    timings["onnxruntime"] = median_seconds(lambda: session.run(["fused"], feeds), args.repeats)

    print(f"CS2Fusion {args.width}x{args.height}, {threads} thread(s), torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, weights {args.weights or 'random'}; median of {args.repeats}")
    print(f"max |onnx - torch| = {difference:.2e}")
    for name, seconds in timings.items():
        print(f"{name:22s} {seconds:8.3f} s/pair   {seconds / timings['onnxruntime']:5.2f}x onnxruntime")


if __name__ == "__main__":
    main()
