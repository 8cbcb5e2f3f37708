"""Salient infrared foreground: the ``ir-saliency-v1`` mask (warm targets, tracer uptake).

The official masks (manually annotated TNO targets, per a paper summary) are not available
(docs/coconet.md section 2.5), so they are made from the infrared image - for medical pairs
from the functional image (CT/PET/SPECT), which plays the infrared role - with a simple
deterministic saliency method, ``ir-saliency-v1``:

1. ``x``: the image's luma in [0, 1]; D = max(H, W).
2. Centre-surround contrast: ``s = max(G(x, sigma_c) - G(x, sigma_s), 0)`` with Gaussian blurs
   sigma_c = max(1, D / 256) (noise) and sigma_s = D / 12 (the local background), so warm
   objects stand out from their surroundings whatever the global level. Only the positive
   part counts: infrared targets (people, vehicles) and tracer uptake are brighter than
   what surrounds them.
3. ``s`` is scaled to [0, 1] by its maximum; the threshold is Otsu's on the pixels with
   ``s > 0`` (256 bins), and at least ``MIN_RELATIVE_THRESHOLD`` of the maximum, so a flat
   image gives an empty mask instead of thresholded noise.
4. Clean-up: binary opening (3x3), hole filling, and removal of connected components smaller
   than ``max(16, 0.0005 * H * W)`` pixels.

Used by CoCoNet's training masks (:mod:`contrafuse.data.masks`) and by the region metrics
(FG_IR, BG_VIS). numpy and scipy.ndimage only.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

MASK_METHOD = "ir-saliency-v1"
MIN_RELATIVE_THRESHOLD = 0.1


def ir_saliency(ir: np.ndarray) -> np.ndarray:
    """Centre-surround saliency of a ``(H, W)`` luma array in [0, 1]; float64 in [0, 1]."""
    x = np.asarray(ir, dtype=np.float64)
    d = max(x.shape)
    centre = ndimage.gaussian_filter(x, max(1.0, d / 256), mode="reflect")
    surround = ndimage.gaussian_filter(x, max(1.0, d / 12), mode="reflect")
    s = np.maximum(centre - surround, 0.0)
    peak = s.max()
    return s / peak if peak > 0 else s


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the bin edge maximising the between-class variance."""
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    counts = counts.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1e-12)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1e-12)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def foreground_mask(ir: np.ndarray) -> np.ndarray:
    """The ``ir-saliency-v1`` mask of a ``(H, W)`` luma array in [0, 1]: bool ``(H, W)``."""
    s = ir_saliency(ir)
    positive = s[s > 0]
    if positive.size == 0:
        return np.zeros(s.shape, dtype=bool)
    threshold = max(otsu_threshold(positive), MIN_RELATIVE_THRESHOLD)
    mask = s > threshold
    mask = ndimage.binary_opening(mask, structure=np.ones((3, 3), dtype=bool))
    mask = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(mask)
    if count:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= max(16, 0.0005 * mask.size)
        keep[0] = False
        mask = keep[labels]
    return mask
