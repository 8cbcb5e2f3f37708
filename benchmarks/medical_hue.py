"""Hue kept in the tracer region of PET/SPECT fusion: mean hue difference (degrees) between the
fused colour image and the pseudo-colour functional input, inside the region where that input is
saturated (HSV saturation > 0.5, value > 0.2), for each model and each ``--gamut`` rule.

    PYTHONPATH=src python benchmarks/medical_hue.py [--data-root DIR] [--models coconet-medical,average,laplacian]

The Harvard test split's MRI-PET and MRI-SPECT pairs (the MRI-CT pairs have no colour).
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from contrafuse import fuse
from contrafuse.data import dataset_pairs


def hsv(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("HSV"), dtype=np.float64) / 255.0


def hue_difference(functional: np.ndarray, fused: np.ndarray) -> float:
    """Mean absolute hue difference in degrees inside the functional image's saturated region."""
    source, out = hsv(functional), hsv(fused)
    region = (source[..., 1] > 0.5) & (source[..., 2] > 0.2) & (out[..., 2] > 0.05)
    difference = np.abs(source[..., 0] - out[..., 0]) * 360.0
    return float(np.minimum(difference, 360.0 - difference)[region].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="root of the named datasets (default: $CONTRAFUSE_DATA or shared/data)")
    parser.add_argument("--models", default="coconet-medical,average,laplacian")
    args = parser.parse_args()
    pairs = [p for p in dataset_pairs("harvard", "test", args.data_root) if not p.name.startswith("MRI_CT")]
    print(f"{len(pairs)} PET/SPECT pairs of harvard:test")
    print("| model | gamut | mean hue difference (deg) | worst image (deg) |\n|---|---|---:|---:|")
    for model in args.models.split(","):
        for gamut in ("auto", "clip"):
            values = [hue_difference(np.asarray(Image.open(p.ir).convert("RGB")),
                                     fuse(ir=p.ir, vis=p.vis, model=model, gamut=gamut)) for p in pairs]
            print(f"| {model} | {gamut} | {np.mean(values):.2f} | {np.max(values):.2f} |")


if __name__ == "__main__":
    main()
