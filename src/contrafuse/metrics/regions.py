"""Region fidelity: does the fused image keep the infrared targets and the visible background?

Both use the ``ir-saliency-v1`` foreground mask of the infrared image
(:func:`contrafuse.saliency.foreground_mask`: warm targets, tracer uptake). Not metrics of the
published evaluators (ours; both conventions agree), so not in the default set:

* FG_IR: mean |F - IR| inside the mask, grey levels 0..255 (lower: the targets follow the IR).
* BG_VIS: mean |F - VIS| outside the mask, grey levels 0..255 (lower: the scene follows the VIS).
* OUT25: share of pixels (%) more than 25 grey levels brighter than both sources or darker than
  both: intensities that neither image holds (halos, blotches, inverted skies). No mask.

An image whose mask is empty (or full) has no foreground (or background): the value is NaN
with a warning.
"""
from __future__ import annotations

import numpy as np

from ..saliency import foreground_mask
from ._common import FusionImages, warn_fallback


def _mask(images: FusionImages) -> np.ndarray:
    return images.cached("ir_saliency_mask", lambda: foreground_mask(images.ir / 255.0))


def _mean_distance(images: FusionImages, source: np.ndarray, region: np.ndarray, metric: str, what: str) -> float:
    if not region.any():
        warn_fallback(metric, f"the infrared image has no {what}", float("nan"))
        return float("nan")
    return float(np.abs(images.fused[region] - source[region]).mean())


def foreground_distance_to_ir(images: FusionImages, convention: str) -> float:
    """FG_IR: mean |F - IR| over the infrared foreground mask, 0..255."""
    return _mean_distance(images, images.ir, _mask(images), "FG_IR", "salient foreground")


def background_distance_to_vis(images: FusionImages, convention: str) -> float:
    """BG_VIS: mean |F - VIS| outside the infrared foreground mask, 0..255."""
    return _mean_distance(images, images.vis, ~_mask(images), "BG_VIS", "background")


ARTIFACT_MARGIN = 25.0  # grey levels beyond both sources


def outside_both_share(images: FusionImages, convention: str) -> float:
    """OUT25: % of pixels with F > max(IR, VIS) + 25 or F < min(IR, VIS) - 25 (0..255 images)."""
    high = np.maximum(images.ir, images.vis) + ARTIFACT_MARGIN
    low = np.minimum(images.ir, images.vis) - ARTIFACT_MARGIN
    return float(((images.fused > high) | (images.fused < low)).mean() * 100.0)
