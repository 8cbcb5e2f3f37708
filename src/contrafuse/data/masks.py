"""Foreground masks for CoCoNet's coupled contrastive loss: user folders, a cache, or computed.

The official masks (manually annotated TNO targets, per a paper summary) are not available
(docs/coconet.md section 2.5), so they are computed from the infrared image - for medical
pairs from the functional image (CT/PET/SPECT), which plays the infrared role - with the
deterministic ``ir-saliency-v1`` method of :mod:`contrafuse.saliency`.

Masks can be cached (one PNG per image, named by file stem, content hash and method
version) and user-supplied mask folders take precedence (files matched by stem; any
non-zero-at-half-maximum pixel is foreground).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import write_with
from ..io import list_images
from ..saliency import MASK_METHOD, foreground_mask

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
