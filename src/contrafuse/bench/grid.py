"""Image grids for the reports: where to zoom, and the zoom inset itself.

Every panel of one pair (IR, VIS and each method's result) gets the same zoom box, so the
insets compare like with like. The box is placed by the user (:class:`InsetChoice`, from
``--inset x,y,w,h``), or follows the infrared target: the window where the infrared image is
brightest against its surroundings (the warm person, the PET hot spot), which gradient energy
alone misses in favour of foliage noise. ``detail`` keeps that gradient-energy choice.
Panels are ``uint8`` RGB ``(H, W, 3)`` arrays.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..color import rgb_to_luma
from ..errors import ContrafuseError
from ..panels import to_display

INSET_COLOR = (255, 48, 48)
AUTO_MODES = ("target", "detail")
ZOOM_FRACTION = 0.22  # side of an automatic box, as a fraction of the image's shorter side
INSET_SCALE = 0.42  # longer side of the drawn inset, as a fraction of the image's shorter side


class InsetError(ContrafuseError):
    """An ``--inset`` value cannot be used (malformed, empty, outside the image)."""


@dataclass(frozen=True)
class ZoomBox:
    """The region ``[top, top + height) x [left, left + width)`` of the image, in pixels."""

    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class UserBox:
    """A box given by the user: ``x, y, w, h`` in pixels, or fractions of the image size."""

    x: float
    y: float
    w: float
    h: float
    fractions: bool = False

    def on(self, height: int, width: int, where: str) -> ZoomBox:
        """The box in pixels of a ``height`` x ``width`` image, clipped to it."""
        scale_x, scale_y = (width, height) if self.fractions else (1, 1)
        left, top = int(round(self.x * scale_x)), int(round(self.y * scale_y))
        right = min(width, int(round((self.x + self.w) * scale_x)))
        bottom = min(height, int(round((self.y + self.h) * scale_y)))
        if left >= width or top >= height or right - left < 2 or bottom - top < 2:
            raise InsetError(f"--inset {self.describe()}: outside {where} ({width}x{height})")
        return ZoomBox(top, left, bottom - top, right - left)

    def describe(self) -> str:
        values = (self.x, self.y, self.w, self.h)
        return ",".join(f"{v:g}" for v in values)


@dataclass
class InsetChoice:
    """Where the insets go: a box for every pair, boxes for named pairs, else an automatic mode."""

    mode: str = "target"  # "target" or "detail" for pairs without a box
    box: UserBox | None = None  # for every pair
    pair_boxes: dict[str, UserBox] = field(default_factory=dict)

    def box_for(self, name: str, ir: np.ndarray, vis: np.ndarray) -> ZoomBox:
        """The zoom box of pair ``name`` (its sources ``ir`` and ``vis``)."""
        user = self.pair_boxes.get(name, self.box)
        if user is not None:
            return user.on(*vis.shape[:2], where=f"pair {name}")
        return choose_zoom(ir, vis, self.mode)

    def describe(self) -> str:
        """One line for the report."""
        parts = []
        if self.box is not None:
            parts.append(f"box {self.box.describe()}{' (fractions)' if self.box.fractions else ' (pixels)'} on every pair")
        parts += [f"box {b.describe()} on {n}" for n, b in self.pair_boxes.items()]
        if self.box is None:
            what = "the infrared target" if self.mode == "target" else "the most gradient detail"
            parts.append(f"{'elsewhere' if self.pair_boxes else 'automatic'}: {what}")
        return "; ".join(parts)


_NUMBER = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*"
_BOX = re.compile(rf"^{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}$")


def parse_box(text: str) -> UserBox:
    """``"x,y,w,h"``: integers are pixels; numbers written with a decimal point are fractions
    of the image's width (x, w) and height (y, h), e.g. ``0.5,0.25,0.2,0.2``."""
    match = _BOX.match(text)
    if not match:
        raise InsetError(f"--inset {text!r}: expected x,y,w,h (pixels, or fractions such as 0.5,0.2,0.25,0.25), "
                         f"or one of {', '.join(AUTO_MODES)}")
    values = [float(v) for v in match.groups()]
    fractions = "." in text
    if values[2] <= 0 or values[3] <= 0:
        raise InsetError(f"--inset {text!r}: width and height must be > 0")
    if fractions and any(v > 1 for v in values):
        raise InsetError(f"--inset {text!r}: fractions must lie in [0, 1] (write pixels without a decimal point)")
    return UserBox(*values, fractions=fractions)


def parse_insets(entries: list[str] | None) -> InsetChoice:
    """``--inset`` values: ``target``/``detail``, ``x,y,w,h`` (every pair) or ``PAIR=x,y,w,h``."""
    choice = InsetChoice()
    for entry in entries or []:
        entry = entry.strip()
        if entry in AUTO_MODES:
            choice.mode = entry
        elif "=" in entry:
            name, _, box = entry.partition("=")
            choice.pair_boxes[name.strip()] = parse_box(box)
        else:
            choice.box = parse_box(entry)
    return choice


def _luma(image: np.ndarray) -> np.ndarray:
    return rgb_to_luma(to_display(image)).astype(np.float64)


def detail_energy(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Gradient magnitude of IR plus VIS, ``(H, W)`` float64: where the sources have detail."""
    energy = np.zeros(vis.shape[:2])
    for image in (ir, vis):
        gy, gx = np.gradient(_luma(image))
        energy += np.hypot(gx, gy)
    return energy


def target_energy(ir: np.ndarray) -> np.ndarray:
    """Squared positive contrast of the infrared luma against its blurred surroundings, ``(H, W)``.

    A warm target (much brighter than its neighbourhood) dominates; zero-mean texture such as
    foliage adds little, because squaring favours a few large excesses over many small ones.
    """
    luma = _luma(ir)
    surroundings = gaussian_filter(luma, sigma=max(2.0, min(luma.shape) / 8), mode="reflect")
    return np.square(np.maximum(luma - surroundings, 0.0))


def _window_sums(energy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sum of ``energy`` over every ``height`` x ``width`` window, indexed by its top-left corner."""
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return integral[height:, width:] - integral[:-height, width:] - integral[height:, :-width] + integral[:-height, :-width]


def best_window(energy: np.ndarray, side: int) -> ZoomBox:
    """The ``side`` x ``side`` window holding the most ``energy``, centred on the energy's centroid
    inside it (so a small target sits in the middle of the box, not at an edge)."""
    height, width = energy.shape
    side = max(1, min(side, height, width))
    sums = _window_sums(energy, side, side)
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    patch = energy[top : top + side, left : left + side]
    total = patch.sum()
    if total > 0:
        rows, cols = np.mgrid[0:side, 0:side]
        cy, cx = top + float((rows * patch).sum() / total), left + float((cols * patch).sum() / total)
        top = int(np.clip(round(cy - side / 2), 0, height - side))
        left = int(np.clip(round(cx - side / 2), 0, width - side))
    return ZoomBox(int(top), int(left), side, side)


def choose_zoom(ir: np.ndarray, vis: np.ndarray, mode: str = "target", fraction: float = ZOOM_FRACTION) -> ZoomBox:
    """A square box of side ``fraction * min(H, W)``: on the infrared target (``"target"``; the
    detail choice when the infrared image is flat) or where IR + VIS hold the most gradient
    energy (``"detail"``)."""
    if mode not in AUTO_MODES:
        raise InsetError(f"inset mode {mode!r}: use one of {', '.join(AUTO_MODES)}")
    height, width = vis.shape[:2]
    side = max(4, int(round(fraction * min(height, width))))
    energy = target_energy(ir) if mode == "target" else None
    if energy is None or float(energy.max()) < 1.0:  # a flat infrared image: no target to follow
        energy = detail_energy(ir, vis)
    return best_window(energy, side)


def _outline(image: np.ndarray, top: int, left: int, height: int, width: int, thickness: int) -> None:
    color = np.array(INSET_COLOR, dtype=np.uint8)
    image[top : top + thickness, left : left + width] = color
    image[top + height - thickness : top + height, left : left + width] = color
    image[top : top + height, left : left + thickness] = color
    image[top : top + height, left + width - thickness : left + width] = color


def inset_size(box: ZoomBox, height: int, width: int, scale: float = INSET_SCALE) -> tuple[int, int]:
    """``(h, w)`` of the magnified inset: the box's aspect, its longer side ``scale * min(H, W)``
    (never smaller than the box, never more than half the image)."""
    longest = max(box.height, box.width)
    factor = max(1.0, scale * min(height, width) / longest)
    inset_h, inset_w = box.height * factor, box.width * factor
    shrink = min(1.0, 0.5 * height / inset_h, 0.5 * width / inset_w) if factor > 1 else 1.0
    return max(1, int(round(inset_h * shrink))), max(1, int(round(inset_w * shrink)))


def inset_corner(box: ZoomBox, size: tuple[int, int], height: int, width: int) -> tuple[int, int]:
    """Top-left of the inset: the first corner (bottom right, bottom left, top right, top left)
    where it does not cover the box, else the corner where it covers the least."""
    inset_h, inset_w = size
    corners = [(height - inset_h, width - inset_w), (height - inset_h, 0), (0, width - inset_w), (0, 0)]

    def overlap(corner: tuple[int, int]) -> int:
        top, left = corner
        rows = max(0, min(top + inset_h, box.top + box.height) - max(top, box.top))
        cols = max(0, min(left + inset_w, box.left + box.width) - max(left, box.left))
        return rows * cols

    return min(corners, key=overlap)  # min keeps the first of equal overlaps


def with_inset(image: np.ndarray, box: ZoomBox, scale: float = INSET_SCALE) -> np.ndarray:
    """A copy of ``image`` with ``box`` outlined and magnified into a free corner.

    Args:
        image: gray or RGB pixels (``uint8``/``uint16``), at least the box's size.
        box: the region to magnify.
        scale: the inset's longer side as a fraction of the image's shorter side.

    Returns:
        ``uint8`` RGB ``(H, W, 3)``.
    """
    panel = to_display(image).copy()
    height, width = panel.shape[:2]
    thickness = max(2, round(max(height, width) / 160))  # still visible when the page shrinks the panel
    size = inset_size(box, height, width, scale)
    crop = panel[box.top : box.top + box.height, box.left : box.left + box.width]
    zoomed = np.asarray(Image.fromarray(crop).resize((size[1], size[0]), Image.Resampling.NEAREST))
    top, left = inset_corner(box, size, height, width)
    _outline(panel, box.top, box.left, box.height, box.width, thickness)
    panel[top : top + size[0], left : left + size[1]] = zoomed
    _outline(panel, top, left, size[0], size[1], thickness)
    return panel
