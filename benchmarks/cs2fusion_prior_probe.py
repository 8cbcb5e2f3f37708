"""Where CS2Fusion's backbone loss pulls a fine-tune, before any network training.

For the training pairs of a fine-tune (by default ``llvip:train`` less its last 10 pairs, the
ones ``validation.holdout=10`` holds out; never validation or test pairs) this prints, for each
candidate compensation map P, the pixel optimum of the intensity term
``|P (F - IR)| + |(1 - P)(F - VIS)|`` (the per-pixel fixed point, iterated; Frobenius norms over
the image as in training), scored on the nine metrics against the shipped weights' own output on
the same pairs, the way the training validation scores (minus the mean relative gain; lower is
better), and the map's mean.

    PYTHONPATH=src python benchmarks/cs2fusion_prior_probe.py --every 2
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from contrafuse import metrics
from contrafuse.color import rgb_to_luma
from contrafuse.data import dataset_pairs
from contrafuse.io import read_image
from contrafuse.losses.cs2fusion import compensation_prior_target
from contrafuse.session import Fuser

NINE = ["EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM"]
PRIORS = {  # label: (shape, gamma, softness)
    "difference, gamma 2 (from-scratch recipe)": ("difference", 2.0, 10.0),
    "difference, gamma 1": ("difference", 1.0, 10.0),
    "brighter, softness 10 (fine-tune recipe)": ("brighter", 1.0, 10.0),
    "brighter, softness 25": ("brighter", 1.0, 25.0),
}


def gray(image: np.ndarray) -> np.ndarray:
    return rgb_to_luma(image) if image.ndim == 3 else image.astype(np.float64)


def intensity_optimum(p: np.ndarray, ir: np.ndarray, vis: np.ndarray, rounds: int = 30) -> np.ndarray:
    """The F minimising ||P (F - IR)|| + ||(1 - P)(F - VIS)||: each pixel a weighted mean of the
    sources, with weights P^2 / ||P (F - IR)|| and (1 - P)^2 / ||(1 - P)(F - VIS)|| (its fixed point)."""
    fused = 0.5 * (ir + vis)
    for _ in range(rounds):
        a = p**2 / (np.linalg.norm(p * (fused - ir)) + 1e-6)
        b = (1 - p) ** 2 / (np.linalg.norm((1 - p) * (fused - vis)) + 1e-6)
        fused = (a * ir + b * vis) / (a + b + 1e-12)
    return fused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="llvip:train")
    parser.add_argument("--holdout", type=int, default=10, help="last pairs left out, as validation.holdout")
    parser.add_argument("--every", type=int, default=1, help="use every N-th training pair")
    args = parser.parse_args()
    name, _, split = args.data.partition(":")
    pairs = dataset_pairs(name, split or "train")
    pairs = pairs[: len(pairs) - args.holdout][:: args.every]
    fuser = Fuser("cs2fusion", backend="torch")
    rows: dict[str, list[dict[str, float]]] = {}
    means: dict[str, list[float]] = {}
    for pair in pairs:
        ir, vis = read_image(pair.ir), read_image(pair.vis)
        gi, gv = gray(ir), gray(vis)
        candidates = {"shipped cs2fusion output (the start)": gray(fuser.pair(ir=ir, vis=vis)),
                      "pixel-wise maximum": np.maximum(gi, gv)}
        for label, (shape, gamma, softness) in PRIORS.items():
            p = compensation_prior_target(ir=torch.from_numpy(gi), vis=torch.from_numpy(gv), gamma=gamma, shape=shape,
                                          softness=softness).numpy()
            candidates[label] = intensity_optimum(p, gi, gv)
            means.setdefault(label, []).append(float(p.mean()))
        for label, image in candidates.items():
            fused = np.clip(np.rint(image), 0, 255).astype(np.uint8)
            rows.setdefault(label, []).append(metrics.compute(fused, ir=ir, vis=vis, names=NINE))
    average = {label: {m: float(np.mean([r[m] for r in values])) for m in NINE} for label, values in rows.items()}
    start = average["shipped cs2fusion output (the start)"]
    print(f"{len(pairs)} training pairs of {args.data} (last {args.holdout} held out)\n")
    print("| target | mean P | score | " + " | ".join(NINE) + " |")
    print("|---|---:|---:|" + "---:|" * len(NINE))
    for label, values in average.items():
        score = -np.mean([(values[m] - start[m]) / abs(start[m]) for m in NINE])
        p_mean = f"{np.mean(means[label]):.2f}" if label in means else "-"
        print(f"| {label} | {p_mean} | {score:+.4f} | " + " | ".join(f"{values[m]:.3f}" for m in NINE) + " |")


if __name__ == "__main__":
    main()
