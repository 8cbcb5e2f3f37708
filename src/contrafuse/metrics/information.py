"""Histogram-based metrics: entropy (EN) and mutual information (MI)."""
from __future__ import annotations

import numpy as np

from ._common import FusionImages

_LOG_BASE = {"cddfuse": np.e, "matlab": 2.0}


def entropy(images: FusionImages, convention: str) -> float:
    """EN: Shannon entropy in bits of the 256-bin histogram of F (both conventions)."""
    counts = np.bincount(images.as_uint8("fused").ravel(), minlength=256)
    p = counts[counts > 0] / images.fused.size
    return float(-np.sum(p * np.log2(p)))


def joint_histogram(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """256x256 integer joint histogram of two uint8 images of one shape."""
    codes = x.ravel().astype(np.intp) * 256 + y.ravel()
    return np.bincount(codes, minlength=65536).reshape(256, 256)


def mutual_information_nats(x: np.ndarray, y: np.ndarray) -> float:
    """MI(X; Y) in nats from the joint histogram (what sklearn ``mutual_info_score`` returns)."""
    joint = joint_histogram(x, y)
    n = x.size
    px = joint.sum(axis=1)
    py = joint.sum(axis=0)
    rows, cols = np.nonzero(joint)
    nxy = joint[rows, cols].astype(np.float64)
    # sum p(x,y) log(p(x,y) / (p(x) p(y))) written on counts to avoid tiny intermediate values
    terms = nxy * (np.log(nxy) + np.log(n) - np.log(px[rows].astype(np.float64)) - np.log(py[cols].astype(np.float64)))
    return float(max(np.sum(terms) / n, 0.0))


def mutual_information(images: FusionImages, convention: str) -> float:
    """MI = MI(F; A) + MI(F; B): nats (cddfuse, sklearn) or bits (matlab)."""
    fused = images.as_uint8("fused")
    total = mutual_information_nats(fused, images.as_uint8("ir")) + mutual_information_nats(fused, images.as_uint8("vis"))
    return total / np.log(_LOG_BASE[convention])
