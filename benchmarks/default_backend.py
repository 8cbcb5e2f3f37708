"""The default backend against ONNX Runtime and PyTorch, per 640x480 pair, in one run.

    python benchmarks/default_backend.py [--models cs2fusion,coconet] [--repeats 5]

For each model: a fusing session as `contrafuse fuse` makes it (backend ``auto``: the cached
ONNX export on a CPU), one on the PyTorch reference path (``backend="torch"``), and one running
an explicitly exported ``.onnx`` file (``--backend onnxruntime --model m.onnx``). The three are
timed interleaved on the example pair resized to 640x480 (whole pairs: preparation, model,
finishing), median of the repeats; then the ratio default / ONNX Runtime (target <= 1.1) and the
largest difference of the default's output from PyTorch's, in grey levels (target <= 1). The
cache goes to a temporary folder, so the first-time export is measured too.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example_pair(width: int = 640, height: int = 480) -> tuple[np.ndarray, np.ndarray]:
    ir = cv2.imread(str(EXAMPLES / "ir.png"), cv2.IMREAD_GRAYSCALE)
    vis = cv2.imread(str(EXAMPLES / "vis.png"), cv2.IMREAD_COLOR)[..., ::-1]
    size = (width, height)
    return cv2.resize(ir, size, interpolation=cv2.INTER_CUBIC), np.ascontiguousarray(cv2.resize(vis, size, interpolation=cv2.INTER_CUBIC))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cs2fusion,coconet")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ["CONTRAFUSE_CACHE"] = tempfile.mkdtemp(prefix="contrafuse-cache-")
    from contrafuse.export import export_onnx
    from contrafuse.session import Fuser

    ir, vis = example_pair()
    print(f"{'model':10s} {'default s':>9s} {'torch s':>8s} {'ORT s':>7s} {'default/ORT':>11s} {'torch/default':>13s} "
          f"{'max diff':>8s}  first export s")
    for name in args.models.split(","):
        start = time.perf_counter()
        sessions = {"default": Fuser(name)}
        first_export = time.perf_counter() - start
        sessions["torch"] = Fuser(name, backend="torch")
        exported = export_onnx(name, Path(os.environ["CONTRAFUSE_CACHE"]) / f"{name}-explicit.onnx")
        sessions["ort"] = Fuser(exported)
        outputs = {label: fuser.pair(ir=ir, vis=vis) for label, fuser in sessions.items()}  # warm-up
        times: dict[str, list[float]] = {label: [] for label in sessions}
        for _ in range(args.repeats):
            for label, fuser in sessions.items():
                start = time.perf_counter()
                fuser.pair(ir=ir, vis=vis)
                times[label].append(time.perf_counter() - start)
        median = {label: statistics.median(values) for label, values in times.items()}
        difference = int(np.abs(outputs["default"].astype(int) - outputs["torch"].astype(int)).max())
        print(f"{name:10s} {median['default']:9.3f} {median['torch']:8.3f} {median['ort']:7.3f} "
              f"{median['default'] / median['ort']:11.2f} {median['torch'] / median['default']:13.2f} "
              f"{difference:8d}  {first_export:.1f}")
        print(f"           default runs: {sessions['default'].describe()}")


if __name__ == "__main__":
    main()
