"""Edge-preservation metrics of Xydeas and Petrovic: Qabf and the Nabf artifact measure.

Both read 3x3 Sobel responses of the fused, ir and vis images (F, A, B in the formulas). They are computed once per image with array
slicing (exact for the integer-valued images every metric sees) and periodic borders and
cached on :class:`FusionImages`; Qabf recomputes just the 1-pixel frame for its zero padding.
Nothing else is cached: arrays kept alive across metrics make the allocator fetch fresh
pages for everything after them, which cost more than recomputing cheap maps.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import IMAGE_ROLES, FusionImages, warn_fallback

# Qabf (Xydeas-Petrovic, as in the CDDFuse evaluator and Tang's analysis_Qabf.m)
QABF_TG, QABF_KG, QABF_DG = 0.9994, -15.0, 0.5
QABF_TA, QABF_KA, QABF_DA = 0.9879, -22.0, 0.8

# Nabf (Shreyamsha Kumar's modified artifact measure, Tang's analysis_nabf.m)
NABF_TD, NABF_WT_MIN, NABF_LG = 2.0, 0.001, 1.5
NABF_NRG, NABF_KG, NABF_SIGMAG = 0.9999, 19.0, 0.5
NABF_NRA, NABF_KA, NABF_SIGMAA = 0.9995, 22.0, 0.5

_SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)  # h1
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)  # h3

# scipy.ndimage border names -> np.pad modes
_PAD_MODES = {"constant": "constant", "wrap": "wrap", "mirror": "reflect", "reflect": "symmetric", "nearest": "edge"}


def sobel_responses(image: np.ndarray, border: str = "constant") -> tuple[np.ndarray, np.ndarray]:
    """(Sx, Sy) = MATLAB ``conv2(image, h3, 'same')`` and ``conv2(image, h1, 'same')``.

    h3 = [-1 0 1; -2 0 2; -1 0 1], h1 = [1 2 1; 0 0 0; -1 -2 -1]; so Sx = left - right and
    Sy = below - above of the [1 2 1]-smoothed image. ``border`` names how the image is
    extended (scipy.ndimage names: "constant" = zero padding as conv2, "wrap", "mirror", ...).
    Computed in the image's dtype; exact for integer-valued float32/float64 images.
    """
    padded = np.pad(image, 1, mode=_PAD_MODES[border])
    smooth_rows = padded[:-2] + 2 * padded[1:-1] + padded[2:]  # (H, W + 2)
    smooth_cols = padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]  # (H + 2, W)
    return smooth_rows[:, :-2] - smooth_rows[:, 2:], smooth_cols[2:] - smooth_cols[:-2]


def _sobel_wrap_cached(images: FusionImages, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Sobel responses of ``fused``, ``ir`` or ``vis`` with periodic borders, float32 (exact: |S| <= 4 * 255).

    The one Sobel computation Qabf and Nabf share (see :func:`_sobel_zero_padded`).
    """
    return images.cached(f"sobel_wrap_{role}", lambda: sobel_responses(images.as_float32(role), "wrap"))


# the frame rows/columns, indexed alike in the image and in a 2-pixel strip cut at that side
_FRAME = (
    ((slice(0, 2), slice(None)), (0, slice(None))),
    ((slice(-2, None), slice(None)), (-1, slice(None))),
    ((slice(None), slice(0, 2)), (slice(None), 0)),
    ((slice(None), slice(-2, None)), (slice(None), -1)),
)


def _sobel_zero_padded(images: FusionImages, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded Sobel responses (Qabf) from the shared periodic ones.

    The two differ only on the 1-pixel frame; each frame row/column is recomputed from the
    2-pixel strip at that side, whose own zero padding is the image's.
    """
    image = images.as_float32(role)
    sx, sy = (s.copy() for s in _sobel_wrap_cached(images, role))
    for strip, edge in _FRAME:
        strip_sx, strip_sy = sobel_responses(image[strip], "constant")
        sx[edge], sy[edge] = strip_sx[edge], strip_sy[edge]
    return sx, sy


# --- Qabf --------------------------------------------------------------------------------

def edge_strength_and_angle(sx: np.ndarray, sy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sqrt(Sx^2 + Sy^2) and atan(Sy / Sx), pi/2 where Sx = 0 (the reference's quirk), in Sx's dtype."""
    strength = np.sqrt(sx * sx + sy * sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.arctan(sy / sx)
    np.copyto(angle, sx.dtype.type(np.pi / 2), where=sx == 0)
    return strength, angle


def _qabf_edges_of(images: FusionImages, role: str, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """(strength, angle) of one image's zero-padded Sobel responses, in the convention's scale."""
    sx, sy = _sobel_zero_padded(images, role)
    if convention == "matlab":
        # MATLAB runs on im2double images; scaling only matters for the GAF quirk below
        strength, angle = edge_strength_and_angle(sx.astype(np.float64), sy.astype(np.float64))
        return strength / 255.0, angle
    return edge_strength_and_angle(sx, sy)


def _edge_preservation(g_src, a_src, g_f, a_f) -> np.ndarray:
    """Q^{XF} map: product of the strength and orientation sigmoids.

    The reference's operations in its order (so float32 results match it bit for bit),
    evaluated in place to spare temporaries.
    """
    equal = g_src == g_f
    large = np.maximum(g_src, g_f)
    ratio = np.minimum(g_src, g_f)
    np.divide(ratio, large, out=ratio, where=~equal)
    # quirk kept from the reference: where the strengths are equal, the strength itself, not 1
    np.copyto(ratio, g_f, where=equal)
    q_strength = _sigmoid(ratio, QABF_TG, QABF_KG, QABF_DG)
    orientation = np.subtract(a_src, a_f)
    np.abs(orientation, out=orientation)
    orientation /= np.pi / 2
    np.subtract(1, orientation, out=orientation)
    q_angle = _sigmoid(orientation, QABF_TA, QABF_KA, QABF_DA)
    q_strength *= q_angle
    return q_strength


def _sigmoid(x: np.ndarray, top: float, slope: float, centre: float) -> np.ndarray:
    """top / (1 + exp(slope * (x - centre))), overwriting ``x``."""
    x -= centre
    x *= slope
    np.exp(x, out=x)
    x += 1
    return np.divide(top, x, out=x)


def qabf(images: FusionImages, convention: str) -> float:
    """Qabf in [0, 1]: edge-strength-weighted preservation of A's and B's edges in F.

    cddfuse works in float32 like the evaluator; matlab in float64 on [0, 1] images. Both
    sources constant (no edges at all) returns 0 with a warning.
    """
    g_ir, angle_ir = _qabf_edges_of(images, "ir", convention)
    g_vis, angle_vis = _qabf_edges_of(images, "vis", convention)
    g_fused, angle_fused = _qabf_edges_of(images, "fused", convention)
    denominator = np.sum(g_ir + g_vis)
    if denominator == 0:
        warn_fallback("Qabf", "both sources are constant (no edges)", 0.0)
        return 0.0
    weighted = _edge_preservation(g_ir, angle_ir, g_fused, angle_fused)
    weighted *= g_ir
    q_vis = _edge_preservation(g_vis, angle_vis, g_fused, angle_fused)
    q_vis *= g_vis
    weighted += q_vis
    return float(np.sum(weighted) / denominator)


# --- Nabf --------------------------------------------------------------------------------

class NabfEdges:
    """Sobel/8 correlation responses of ``sobel_fn.m``, gv = correlate(image, h3 / 8) and
    gh = correlate(image, -h1 / 8), and their strength. The angle atan(gv / gh) is only
    evaluated where Nabf needs it (see :meth:`angle_at`).

    ``gv`` and ``gh`` may be kept in other units: the responses are ``gv * gv_unit`` and
    ``gh * gh_unit`` (powers of two, so the scaling is exact).
    """

    def __init__(self, gv: np.ndarray, gh: np.ndarray, strength: np.ndarray,
                 gv_unit: float = 1.0, gh_unit: float = 1.0):
        self.gv, self.gh, self.strength = gv, gh, strength
        self.gv_unit, self.gh_unit = gv_unit, gh_unit

    @classmethod
    def from_responses(cls, gv: np.ndarray, gh: np.ndarray) -> NabfEdges:
        return cls(gv, gh, np.sqrt(gh * gh + gv * gv))

    @classmethod
    def from_sobel(cls, sx: np.ndarray, sy: np.ndarray) -> NabfEdges:
        """From integer float32 Sobel responses (gv = -Sx/8, gh = Sy/8). Sx^2 + Sy^2 is exact in
        float32 here, and sqrt(m) / 8 = sqrt(m / 64) exactly, so the strength is bit-identical
        to :meth:`from_responses` on the float64 responses."""
        squared = sx * sx
        squared += sy * sy
        strength = np.sqrt(squared, dtype=np.float64)
        strength *= 0.125
        return cls(sx, sy, strength, gv_unit=-0.125, gh_unit=0.125)

    def angle_at(self, index: np.ndarray) -> np.ndarray:
        """atan(gv / gh) at the flat ``index`` positions; 0 where gv = gh = 0."""
        gv = self.gv.ravel()[index].astype(np.float64) * self.gv_unit
        gh = self.gh.ravel()[index].astype(np.float64) * self.gh_unit
        with np.errstate(divide="ignore", invalid="ignore"):
            angle = np.arctan(gv / gh)
        np.copyto(angle, 0.0, where=(gv == 0) & (gh == 0))
        return angle


def _nabf_edges_of(image: np.ndarray, border: str) -> NabfEdges:
    """Edges of any float image (e.g. the literal [0, 1] reading), by 2-D Sobel/8 correlation
    (``sobel_fn.m``) with ``border`` extension (scipy.ndimage names)."""
    image = np.asarray(image, dtype=np.float64)
    return NabfEdges.from_responses(ndimage.correlate(image, _SOBEL_X / 8.0, mode=border),
                                    ndimage.correlate(image, -_SOBEL_Y / 8.0, mode=border))


def _nabf_edges_from_shared(images: FusionImages, role: str) -> NabfEdges:
    """Edges of an integer-valued image from the shared Sobel responses: gv = -Sx/8, gh = Sy/8
    (exact; the same numbers as :func:`_nabf_edges_of`)."""
    return NabfEdges.from_sobel(*_sobel_wrap_cached(images, role))


def _nabf_preservation(g_src, a_src, g_f, a_f) -> np.ndarray:
    nonzero = (g_src != 0) & (g_f != 0)
    small, large = np.minimum(g_src, g_f), np.maximum(g_src, g_f)
    ratio = np.divide(small, large, out=np.zeros_like(small), where=nonzero)
    orientation = np.abs(np.abs(a_src - a_f) - np.pi / 2) * (2 / np.pi)
    q_strength = NABF_NRG / (1 + np.exp(-NABF_KG * (ratio - NABF_SIGMAG)))
    q_angle = NABF_NRA / (1 + np.exp(-NABF_KA * (orientation - NABF_SIGMAA)))
    return np.sqrt(q_strength * q_angle)


def _nabf_weights(strength: np.ndarray) -> np.ndarray:
    return np.where(strength >= NABF_TD, strength * np.sqrt(strength), NABF_WT_MIN)  # g^1.5


def _nabf_from_edges(fused: NabfEdges, *, ir: NabfEdges, vis: NabfEdges) -> float:
    """Weighted loss at artifact pixels (fused edge stronger than both sources') over all weights.

    Only artifact pixels enter the numerator, so the angles and the preservation sigmoids
    are evaluated there alone.
    """
    w_ir, w_vis = _nabf_weights(ir.strength), _nabf_weights(vis.strength)
    denominator = np.sum(w_ir + w_vis)
    artifacts = np.flatnonzero((fused.strength > ir.strength) & (fused.strength > vis.strength))
    g_fused, angle_fused = fused.strength.ravel()[artifacts], fused.angle_at(artifacts)
    loss = 0.0
    for source, weights in ((ir, w_ir), (vis, w_vis)):
        q = _nabf_preservation(source.strength.ravel()[artifacts], source.angle_at(artifacts), g_fused, angle_fused)
        loss += np.sum((1 - q) * weights.ravel()[artifacts])
    return float(loss / denominator)


def nabf_value(fused: np.ndarray, *, ir: np.ndarray, vis: np.ndarray, border: str = "wrap") -> float:
    """Nabf of float ``(H, W)`` images in the scale given (0..255 for the golden values), in [0, 1].

    ``border="mirror"`` is what ``per_extn_im_fn.m`` really does despite its name; with
    [0, 1] images it reproduces the literal reading of Tang's code (see docs/metrics.md).
    """
    edges = {role: _nabf_edges_of(image, border) for role, image in (("fused", fused), ("ir", ir), ("vis", vis))}
    return _nabf_from_edges(edges["fused"], ir=edges["ir"], vis=edges["vis"])


def nabf(images: FusionImages, convention: str) -> float:
    """Nabf in [0, 1] (lower is better): weighted loss at pixels where F has stronger edges
    than both sources, i.e. artifacts (Shreyamsha Kumar's modified NABF).

    Same in both conventions: Sobel/8 with periodic borders on 0..255 images, which is what
    the golden values use. Tang's analysis_Reference.m passes im2double images (so the Td = 2
    edge threshold never fires) and mirrors the borders; see docs/metrics.md.
    """
    edges = {role: _nabf_edges_from_shared(images, role) for role in IMAGE_ROLES}
    return _nabf_from_edges(edges["fused"], ir=edges["ir"], vis=edges["vis"])
