"""Reading and writing images, and pairing the files of two folders.

Images come back as NumPy arrays: ``(H, W)`` for gray, ``(H, W, 3)`` for colour (RGB), with
dtype ``uint8`` or ``uint16`` as stored (``float32`` for a 32-bit float TIFF: radiometric thermal
data). Alpha is dropped, palettes are expanded. Writes go
through :mod:`contrafuse.atomic` (never half a file, never replacing an existing file unless
``overwrite=True``). :class:`PairFiles` is the one record of an infrared/visible file pair.
"""
from __future__ import annotations

import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import write_with
from .errors import ContrafuseError, ContrafuseWarning, ImageReadError, ImageWriteError, PairError, WriteError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm")


def is_video(path: str | os.PathLike) -> bool:
    """True when ``path`` has a video suffix (see :data:`VIDEO_SUFFIXES`): fused frame by frame."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


MAX_PIXELS_ENV = "CONTRAFUSE_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The largest image read: ``$CONTRAFUSE_MAX_IMAGE_PIXELS``, else Pillow's decompression-bomb limit."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if value is None:
        return int(Image.MAX_IMAGE_PIXELS or 0) or 2**62
    try:
        return int(value)
    except ValueError:
        raise ContrafuseError(f"${MAX_PIXELS_ENV}={value!r} is not a whole number of pixels") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``uint8``/``uint16`` ``(H, W)`` gray or ``(H, W, 3)`` RGB.

    A 32-bit float TIFF (a radiometric thermal image: temperatures, NaN for dead pixels) comes
    back as float32 ``(H, W)`` in its own units; :mod:`contrafuse.thermal` windows it.

    The EXIF orientation is applied (the image comes back as a viewer displays it). A
    multi-frame file (animated GIF, multi-page TIFF) gives its first frame and a
    :class:`~contrafuse.errors.ContrafuseWarning` naming the file.

    Raises:
        ImageReadError: the file is missing, empty, truncated, not an image, larger than
            :func:`max_image_pixels`, or of a pixel format we do not fuse (the message names
            the file and the problem).
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, expected an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty")
    try:
        with Image.open(path) as image:
            _check_pixel_count(image, path)
            _warn_if_multi_frame(image, path)
            image.load()
            return _to_array(ImageOps.exif_transpose(image), path)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(path, f"cannot decode image ({exc})") from None


def _check_pixel_count(image: Image.Image, path: Path) -> None:
    width, height = image.size
    limit = max_image_pixels()
    if width * height > limit:
        raise ImageReadError(
            path, f"{width}x{height} pixels is more than the {limit:,} allowed (a decompression bomb?); "
            f"set ${MAX_PIXELS_ENV} to read larger images"
        )


def _warn_if_multi_frame(image: Image.Image, path: Path) -> None:
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        warnings.warn(f"{path}: has {frames} frames (animated or multi-page); only the first is used",
                      ContrafuseWarning, stacklevel=3)


def _to_array(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image, dtype=np.uint16).copy()
    if mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(path, "32-bit integer pixels outside 0..65535 are not supported")
        return values.astype(np.uint16)
    if mode == "F":
        return np.asarray(image, dtype=np.float32).copy()  # radiometric: temperatures, NaN for dead pixels
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if mode == "LA":
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if mode == "P":
        has_alpha = "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def is_color(image: np.ndarray) -> bool:
    """True for a ``(H, W, 3)`` image whose channels are not all equal."""
    if image.ndim != 3:
        return False
    return not (np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]))


def max_value(image: np.ndarray) -> int:
    """Full-scale value of an integer image: 255 for ``uint8``, 65535 for ``uint16``."""
    return int(np.iinfo(image.dtype).max)


def write_image(path: str | os.PathLike, image: np.ndarray, overwrite: bool = False) -> Path:
    """Write ``uint8``/``uint16`` gray ``(H, W)`` or RGB ``(H, W, 3)`` atomically.

    The format follows the suffix (PNG, JPEG, BMP, TIFF). 16-bit colour is written as 48-bit
    PNG. The parent folder is created. An existing file is kept unless ``overwrite``.
    """
    path = Path(path)
    _check_writable_array(path, image)
    try:
        return write_with(path, lambda temp: _encode(temp, image), overwrite=overwrite)
    except WriteError as exc:
        if isinstance(exc, ImageWriteError):
            raise
        raise ImageWriteError(exc.path, exc.problem) from None


def _check_writable_array(path: Path, image: np.ndarray) -> None:
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageWriteError(path, f"pixels must be uint8 or uint16, got {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ImageWriteError(path, f"expected (H, W) or (H, W, 3) pixels, got shape {image.shape}")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageWriteError(path, f"unknown image suffix {path.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    if image.dtype == np.uint16 and path.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
        raise ImageWriteError(path, "16-bit pixels need PNG or TIFF")
    if image.dtype == np.uint16 and image.ndim == 3 and path.suffix.lower() != ".png":
        raise ImageWriteError(path, "16-bit colour is written as PNG only")


def _encode(temp: Path, image: np.ndarray) -> None:
    suffix = temp.suffix.lower()
    if image.dtype == np.uint16 and image.ndim == 3:
        temp.write_bytes(_png_rgb48(image))
        return
    if image.dtype == np.uint16:
        pil = Image.fromarray(image.astype("<u2"))  # Pillow maps little-endian uint16 to I;16
    else:
        pil = Image.fromarray(image)
    pil.save(temp, format=_PIL_FORMATS[suffix], **({"quality": 95} if suffix in (".jpg", ".jpeg") else {}))


_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def _png_rgb48(image: np.ndarray) -> bytes:
    """Encode 16-bit RGB as PNG (Pillow cannot write 48-bit PNG)."""
    height, width, _ = image.shape
    rows = image.astype(">u2").reshape(height, width * 3)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


@dataclass(frozen=True)
class PairFiles:
    """One infrared/visible pair of files: ``ir`` is the infrared (or CT/PET/SPECT) image,
    ``vis`` the visible (or MRI) image; ``name`` identifies the pair (usually the file stem)."""

    name: str
    ir: Path
    vis: Path


@dataclass
class FolderPairs:
    """Files of two folders matched by stem (the name without its suffix)."""

    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)
    only_in_first: list[Path] = field(default_factory=list)
    only_in_second: list[Path] = field(default_factory=list)


def list_images(folder: str | os.PathLike) -> dict[str, Path]:
    """Map stem -> path for the image files of a folder (sorted, not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PairError(f"{folder}: not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem in found:
            raise PairError(f"{folder}: two files share the stem {path.stem!r} ({found[path.stem].name}, {path.name})")
        found[path.stem] = path
    return found


def match_folders(first: str | os.PathLike, second: str | os.PathLike) -> FolderPairs:
    """Pair the images of two folders by stem; suffixes may differ (``a.png`` ~ ``a.jpg``)."""
    left, right = list_images(first), list_images(second)
    result = FolderPairs()
    for stem in sorted(left):
        if stem in right:
            result.pairs.append((stem, left[stem], right[stem]))
        else:
            result.only_in_first.append(left[stem])
    result.only_in_second = [right[stem] for stem in sorted(right) if stem not in left]
    return result


def pair_folders(*, ir: str | os.PathLike, vis: str | os.PathLike) -> tuple[list[PairFiles], list[Path]]:
    """The pairs of an infrared and a visible folder matched by stem, and the unmatched files."""
    matched = match_folders(ir, vis)
    pairs = [PairFiles(stem, ir_path, vis_path) for stem, ir_path, vis_path in matched.pairs]
    return pairs, matched.only_in_first + matched.only_in_second
