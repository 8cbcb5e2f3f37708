"""Foreground masks for CoCoNet's coupled contrastive loss.

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

Masks can be cached (one PNG per image, named by file stem, content hash and method
version) and user-supplied mask folders take precedence (files matched by stem; any
non-zero-at-half-maximum pixel is foreground). numpy and scipy.ndimage only.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..atomic import write_with
from ..io import list_images

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


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask image as bool ``(H, W)``: pixels at or above half the image's maximum (0/1 and
    0/255 files both work; colour files use their first channel)."""
    array = np.asarray(Image.open(path))
    if array.ndim == 3:
        array = array[..., 0]
    peak = float(array.max()) if array.size else 0.0
    return array >= peak / 2 if peak > 0 else np.zeros(array.shape, dtype=bool)


class MaskSource:
    """Foreground masks for training images: user-supplied, cached, or computed.

    ``mask_for(ir_path, ir_luma, name)`` looks, in order, for ``user_dir/<name>.*`` and
    ``user_dir/<ir file stem>.*`` (``name`` may hold a sub-folder, as the combined Harvard
    set's ``MRI_PET/xyz`` do), then for the cached mask in ``cache_dir``, and otherwise
    computes :func:`foreground_mask` (and caches it when ``cache_dir`` is set). Cache files
    are ``<stem>.<content hash>.<method>.png``: a changed image or method never reuses a
    stale mask.
    """

    def __init__(self, user_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> None:
        self.user_dir = Path(user_dir) if user_dir is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._user_files = self._index(self.user_dir) if self.user_dir is not None else {}

    @staticmethod
    def _index(folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: mask folder not found")
        files = dict(list_images(folder))
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            files.update({f"{sub.name}/{stem}": path for stem, path in list_images(sub).items()})
        return files

    def user_mask(self, ir_path: str | os.PathLike, name: str | None = None) -> np.ndarray | None:
        for key in (name, Path(ir_path).stem):
            if key is not None and key in self._user_files:
                return read_mask(self._user_files[key])
        return None

    def cache_path(self, ir_path: str | os.PathLike) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha1(Path(ir_path).read_bytes()).hexdigest()[:12]
        return self.cache_dir / f"{Path(ir_path).stem}.{digest}.{MASK_METHOD}.png"

    def mask_for(self, ir_path: str | os.PathLike, ir_luma: np.ndarray, name: str | None = None) -> np.ndarray:
        """Bool ``(H, W)`` foreground mask of the image at ``ir_path`` whose luma is ``ir_luma``."""
        user = self.user_mask(ir_path, name)
        if user is not None:
            if user.shape != ir_luma.shape:
                raise ValueError(f"mask for {ir_path} is {user.shape[1]}x{user.shape[0]}, image is {ir_luma.shape[1]}x{ir_luma.shape[0]}")
            return user
        cached = self.cache_path(ir_path)
        if cached is not None and cached.is_file():
            return read_mask(cached)
        mask = foreground_mask(ir_luma)
        if cached is not None:
            pixels = Image.fromarray(mask.astype(np.uint8) * 255)
            write_with(cached, lambda temp: pixels.save(temp, format="PNG"), overwrite=True)
        return mask
