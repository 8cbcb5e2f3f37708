"""Interleaved A/B of two source trees: seconds per 640x480 pair through ``fusion.fuse_arrays``.

    git worktree add /tmp/before 4f86537
    python benchmarks/ab_trees.py --before /tmp/before/src --after src [--rounds 3] [--pairs 4]

Each round runs one process per tree and model, alternating before/after, so that a machine
that gets busier or quieter affects both alike. A process loads the model once, fuses the example
pair resized to 640x480 once to warm up, then times ``--pairs`` calls of ``fuse_arrays`` (the
PyTorch path: preparation, model, finishing; the same function in both trees) and prints the
median. CS2Fusion runs with the zero-padded borders in the after tree (``border=zeros``), which
is what the before tree computes. Prints the median over rounds per tree and the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, statistics, sys, time
import cv2, numpy as np
from contrafuse.fusion import fuse_arrays
from contrafuse.models import create_model
name, pairs, options, examples = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
ir = cv2.resize(cv2.imread(examples + "/ir.png", cv2.IMREAD_GRAYSCALE), (640, 480), interpolation=cv2.INTER_CUBIC)
vis = cv2.resize(cv2.imread(examples + "/vis.png", cv2.IMREAD_COLOR)[..., ::-1], (640, 480), interpolation=cv2.INTER_CUBIC)
vis = np.ascontiguousarray(vis)
model = create_model(name, **options)
fuse_arrays(model, ir=ir, vis=vis)
times = []
for _ in range(pairs):
    start = time.perf_counter()
    fuse_arrays(model, ir=ir, vis=vis)
    times.append(time.perf_counter() - start)
print(json.dumps(statistics.median(times)))
"""

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AFTER_OPTIONS = {"cs2fusion": {"border": "zeros"}}


def seconds_per_pair(tree: Path, name: str, pairs: int, options: dict) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", CHILD, name, str(pairs), json.dumps(options), str(EXAMPLES)],
                          env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the src/ folder of the earlier tree")
    parser.add_argument("--after", type=Path, required=True, help="the src/ folder of the later tree")
    parser.add_argument("--models", default="cs2fusion,coconet")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args()
    print(f"{'model':10s} {'before s/pair':>13s} {'after s/pair':>12s} {'after/before':>12s}  rounds (before | after)")
    for name in args.models.split(","):
        before, after = [], []
        for _ in range(args.rounds):
            before.append(seconds_per_pair(args.before, name, args.pairs, {}))
            after.append(seconds_per_pair(args.after, name, args.pairs, AFTER_OPTIONS.get(name, {})))
        b, a = statistics.median(before), statistics.median(after)
        rounds = " ".join(f"{t:.2f}" for t in before) + " | " + " ".join(f"{t:.2f}" for t in after)
        print(f"{name:10s} {b:13.3f} {a:12.3f} {a / b:12.3f}  {rounds}", flush=True)


if __name__ == "__main__":
    main()
