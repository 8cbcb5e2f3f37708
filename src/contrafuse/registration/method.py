"""Estimating the transform between the two images of a multi-modal pair.

Infrared and visible intensities (or MRI and CT/PET/SPECT) are related by no global mapping, but
the *orientation* of their edges is shared. Both images are turned into gradient-orientation
features (doubled angle, so that a dark-to-bright edge in one image matches a bright-to-dark
edge in the other), then:

1. a global search over a grid of rotations and scales, each with the best translation from
   normalized cross-correlation (``cv2.matchTemplate``), at a coarse size;
2. a refinement with ECC (``cv2.findTransformECCWithMask``) on the features, coarse to fine,
   in stages of growing freedom (translation, rigid, affine, homography), from the few best
   distinct search points at the coarse level (the best one goes on); a stage is kept only
   when it raises the correlation and gives a plausible transform; the final model is then
   polished on features recomputed from the moving image resampled into the fixed frame;
3. checks: confidence, overlap, plausibility; a failure raises :class:`RegistrationError`.

All work happens at a reduced size (``working_size``); the resampling is composed into the
returned matrix. The moving image is first resampled to the fixed image's size (the prior: same
field of view), so images of different resolutions start aligned up to the residual.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import RegistrationError
from . import mattes
from .result import MODES, Registration, normalize_direction, resize_matrix, roles

DEFAULT_MIN_CONFIDENCE = 0.20
"""Default threshold on :attr:`Registration.confidence` below which a pair is refused. Results between
it and :data:`VERIFY_BELOW` are only accepted when the two-way check agrees."""

VERIFY_BELOW = 0.40
"""Results whose confidence is below this are also registered the other way round, and refused when
the two directions disagree, even without ``verify``. In this band right and wrong results score
alike, and the two-way check tells them apart (docs/registration.md, "What the confidence means").
0 turns the check off; without it, 0.30 is the calibrated threshold."""

FINE_STAGES = ("ecc", "mattes")
"""The last refinement stage: ``ecc`` (gradient-orientation ECC and its polish, the default) or
``mattes`` (then Mattes mutual information, SimpleITK, translation and affine; extra ``itk``)."""

DEFAULT_WORKING_SIZE = 320
"""Longest side, in pixels, of the grid the refinement runs on."""

SEARCH_SIZE = 128
"""Longest side of the grid of the global search and of the first refinement level."""

MIN_OVERLAP = 0.25
"""Smallest fraction of the fixed image the moving image must cover after alignment."""

MAX_ANISOTROPY = 1.3
"""Largest ratio of the two singular values of the moving-to-fixed linear part in *physical* pixels
(shear, stretch): both cameras have square pixels, so the prior's own stretch between images of
different aspect ratios is taken out before judging."""

SCALE_MARGIN = 1.1
"""How far beyond the searched scales (:class:`SearchRange`) a result's residual scale may lie: ECC
refines continuously, but a result far outside the range it was asked to search has drifted (a
wrong scale of 1.5 on a night pair correlated at 0.27)."""

VERIFY_TOLERANCE = 0.015
"""With ``verify``: largest mean corner disagreement of the two directions, as a fraction of the
moving image's diagonal."""

MIN_SIDE = 24
"""Smallest image side (pixels) we try to register."""

DEFAULT_ECC_TOLERANCE = 1e-4
"""ECC's stopping rule: a run ends when an iteration moves the feature correlation by less than
this (or after 50 iterations). Until 2026-12-08 it was 1e-5 (docs/registration.md, "Speed")."""

_FEATURE_BLUR = 1.0      # Gaussian sigma on the gray image before gradients (refinement levels)
_FEATURE_SMOOTH = 1.0    # Gaussian sigma on the features themselves (widens ECC's basin)
_TEMPLATE_KEEP = 0.7     # central part of the moving image matched in the search
_BORDER_RING = 3         # pixels at each image border left out of ECC (filters extrapolate there)
_POLISH_ROUNDS = 2
_STARTS = 4              # best distinct grid points of the search refined at the coarse level
_STARTS_APART = 3.0      # coarse-grid pixels (largest corner distance) between two starts
_ECC_ITERATIONS = 50
_MOTIONS = {
    "translation": cv2.MOTION_TRANSLATION,
    "rigid": cv2.MOTION_EUCLIDEAN,
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}


@dataclass(frozen=True)
class SearchRange:
    """What the global search covers, relative to the same-field-of-view prior.

    Rotations from ``-max_rotation`` to ``+max_rotation`` degrees in ``rotation_step`` steps, and
    ``scale_steps`` scales spaced evenly in log between ``min_scale`` and ``max_scale``. Shifts up
    to about 15 % of the image size are found at every grid point. ECC then refines
    continuously, so the grid only has to land in its basin (about half a step).
    """

    max_rotation: float = 6.0
    rotation_step: float = 2.0
    min_scale: float = 0.75
    max_scale: float = 1.33
    scale_steps: int = 11

    def rotations(self) -> np.ndarray:
        count = int(round(self.max_rotation / self.rotation_step))
        return np.arange(-count, count + 1) * self.rotation_step

    def scales(self) -> np.ndarray:
        return np.exp(np.linspace(np.log(self.min_scale), np.log(self.max_scale), self.scale_steps))

    def scale_bounds(self) -> tuple[float, float]:
        """The residual scales a result may have: the searched ones, widened by :data:`SCALE_MARGIN`."""
        return self.min_scale / SCALE_MARGIN, self.max_scale * SCALE_MARGIN


def estimate(
    *,
    ir: np.ndarray,
    vis: np.ndarray,
    mode: str = "affine",
    direction: str = "ir_to_vis",
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    initial: Registration | np.ndarray | None = None,
    search: SearchRange = SearchRange(),
    working_size: int = DEFAULT_WORKING_SIZE,
    verify: bool = False,
    verify_below: float = VERIFY_BELOW,
    fine: str = "ecc",
    ecc_tolerance: float = DEFAULT_ECC_TOLERANCE,
    name: str = "pair",
) -> Registration:
    """Estimate the transform that brings the moving image onto the fixed one.

    Args:
        ir, vis: ``(H, W)`` gray or ``(H, W, 3)`` RGB, ``uint8`` or ``uint16`` (float in ``[0, 1]``
            is accepted too). Sizes and fields of view may differ. For medical pairs ``ir`` is the
            functional image (CT/PET/SPECT) and ``vis`` the MRI, as everywhere in contrafuse.
        mode: ``translation``, ``affine``, ``homography``, or ``none`` (no estimation: the
            moving image is only resampled to the fixed image's size).
        direction: ``ir_to_vis`` (default: the infrared image is warped into the visible image's
            frame) or ``vis_to_ir``.
        min_confidence: pairs whose confidence is below this raise :class:`RegistrationError`.
        initial: start from this transform (a :class:`Registration` or a moving-to-fixed 3x3
            matrix) instead of the global search, e.g. the previous frame of a video.
        search: the range of the global search (rotation, scale).
        working_size: longest side of the refinement grid; larger is slower and more precise.
        verify: also register the other way round (fixed onto moving, from its own search) and
            refuse the pair when the two results disagree by more than :data:`VERIFY_TOLERANCE`
            of the moving image's diagonal (mean corner distance). Twice the time; it catches
            most wrong results that pass the confidence threshold, which matters for medical
            pairs (see ``docs/registration.md``).
        verify_below: without ``verify``, the same check for results whose confidence is below
            this (:data:`VERIFY_BELOW`; 0: never).
        fine: the last refinement stage, one of :data:`FINE_STAGES`: ``ecc`` (default) or
            ``mattes`` (Mattes mutual information from the ECC result; needs SimpleITK).
        ecc_tolerance: ECC's stopping rule (:data:`DEFAULT_ECC_TOLERANCE`); smaller is slower and can be
            a little more precise.
        name: how error messages name the pair (e.g. the file names).

    Returns:
        A :class:`Registration` whose ``matrix`` maps moving-image pixels to fixed-image pixels.

    Raises:
        RegistrationError: the pair cannot be registered reliably (confidence below
            ``min_confidence``, too little overlap, an implausible transform, images too small,
            or with ``verify`` the two directions disagreeing).
        ValueError: an unknown ``mode`` or ``direction``, or images that are not 2-D/3-channel.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if fine not in FINE_STAGES:
        raise ValueError(f"fine must be one of {', '.join(FINE_STAGES)}, got {fine!r}")
    check_ecc_tolerance(ecc_tolerance)
    if fine == "mattes":
        mattes.simpleitk()  # before any work: a missing extra is a usage error
    direction = normalize_direction(direction)
    moving_role, _ = roles(direction)
    moving, fixed = (ir, vis) if moving_role == "ir" else (vis, ir)
    moving_values, fixed_values = to_float01(moving, moving_role), to_float01(fixed, roles(direction)[1])
    if min(*moving_values.shape[:2], *fixed_values.shape[:2]) < MIN_SIDE:
        raise RegistrationError(name, f"images smaller than {MIN_SIDE} px on a side carry too little structure")
    problem = _Problem(moving_values, fixed_values, working_size, search.scale_bounds(), ecc_tolerance)
    if mode == "none":
        matrix, confidence = problem.prior, problem.confidence(problem.prior)
    else:
        matrix = problem.refine(problem.start(mode, initial, search), mode, fine)
        confidence = problem.confidence(matrix)
    result = Registration(matrix, mode, direction, moving_values.shape[:2], fixed_values.shape[:2], confidence)
    if mode == "none":
        return result
    _check(result, problem, min_confidence, name)
    if verify or result.confidence < verify_below:
        backward = _Problem(fixed_values, moving_values, working_size, search.scale_bounds(), ecc_tolerance)
        reverse = backward.refine(backward.start(mode, None, search), mode, fine)
        gap = _corner_distance(reverse @ result.matrix, np.eye(3), result.moving_shape)
        limit = VERIFY_TOLERANCE * float(np.hypot(*result.moving_shape))
        if gap > limit:
            raise RegistrationError(
                name, f"the two directions disagree by {gap:.1f} px (more than {limit:.1f} px): the alignment is ambiguous"
            )
    return result


def check_ecc_tolerance(value: float, name: str = "ecc_tolerance") -> float:
    """``value`` if it is an ECC stopping rule in ``(0, 1)``, else ValueError; ``name`` is the option's, for the error."""
    if not 0 < value < 1:
        raise ValueError(f"{name} must lie in (0, 1), got {value:g}")
    return value


def to_gray01(image: np.ndarray, role: str = "image") -> np.ndarray:
    """``(H, W)`` float32 luma in ``[0, 1]`` of a gray or RGB ``uint8``/``uint16``/float image."""
    values = to_float01(image, role)
    return cv2.cvtColor(values, cv2.COLOR_RGB2GRAY) if values.ndim == 3 else values


def to_float01(image: np.ndarray, role: str = "image") -> np.ndarray:
    """Float32 in ``[0, 1]``: ``(H, W)`` for gray (also three equal channels), ``(H, W, 3)`` for colour."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"the {role} image must be (H, W) gray or (H, W, 3) RGB, got shape {image.shape}")
    if image.ndim == 3:
        image = image[..., :3]
        if np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]):
            image = image[..., 0]
    scale = float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0
    return np.ascontiguousarray(image, dtype=np.float32) / np.float32(scale)


def orientation_features(image: np.ndarray, blur: float, smooth: float, channels: int = 3) -> np.ndarray:
    """Gradient-orientation features of a gray or colour image, ``(H, W, channels)`` float32.

    Channels: ``w cos 2θ``, ``w sin 2θ`` (the doubled gradient angle, blind to edge polarity) and,
    for ``channels=3``, ``w`` itself, where ``w = sqrt(|∇I|)`` damps the strongest edges so that
    one modality's high-contrast texture does not swamp the other's. For colour the gradients of
    the channels are summed as a structure tensor, so an edge between two colours of equal
    luma (pseudo-colour PET/SPECT) still counts.
    """
    smoothed = cv2.GaussianBlur(image, (0, 0), blur) if blur > 0 else image
    gx = cv2.Sobel(smoothed, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smoothed, cv2.CV_32F, 0, 1, ksize=3)
    if gx.ndim == 3:
        xx, yy, xy = (gx * gx).sum(axis=2), (gy * gy).sum(axis=2), (gx * gy).sum(axis=2)
    else:
        xx, yy, xy = gx * gx, gy * gy, gx * gy
    energy = xx + yy
    weight = np.sqrt(np.sqrt(energy))
    scale = weight / (energy + 1e-12)
    parts = [(xx - yy) * scale, 2.0 * xy * scale]
    if channels == 3:
        parts.append(weight)
    features = np.dstack(parts).astype(np.float32)
    return cv2.GaussianBlur(features, (0, 0), smooth) if smooth > 0 else features


class _Problem:
    """One pair at working resolution: the prior, the pyramid levels and the estimation steps.

    Matrices passed between the steps always map *full-resolution* moving pixels to
    full-resolution fixed pixels; each level converts to its own grid.
    """

    def __init__(self, moving: np.ndarray, fixed: np.ndarray, working_size: int, scales: tuple[float, float],
                 ecc_tolerance: float):
        self.prior = resize_matrix(moving.shape[:2], fixed.shape[:2])  # same field of view
        work = _fit(fixed.shape[:2], working_size)
        coarse = _fit(fixed.shape[:2], min(SEARCH_SIZE, working_size))
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, _ECC_ITERATIONS, ecc_tolerance)
        self.levels = [_Level(moving, fixed, coarse, scales, criteria)]
        if max(work) > 1.25 * max(coarse):
            self.levels.append(_Level(moving, fixed, work, scales, criteria))

    def start(self, mode: str, initial: Registration | np.ndarray | None, search: SearchRange) -> list[np.ndarray]:
        """The starting matrices: ``initial`` if given, else the best distinct points of the global search."""
        if initial is not None:
            matrix = initial.matrix if isinstance(initial, Registration) else np.asarray(initial, dtype=np.float64)
            if matrix.shape != (3, 3):
                raise ValueError(f"initial must be a Registration or a 3x3 matrix, got shape {matrix.shape}")
            return [matrix]
        level = self.levels[0]
        if mode == "translation":
            scales, rotations = np.array([1.0]), np.array([0.0])
        else:
            scales, rotations = search.scales(), search.rotations()
        return [level.to_full(found) for found in level.search(scales, rotations)]

    def refine(self, starts: list[np.ndarray], mode: str, fine: str = "ecc") -> np.ndarray:
        """ECC coarse to fine; at the first level in stages, at the last the final model.

        Each start goes through the first level's stages; the one that ends with the highest
        correlation there goes on (the search's best point is not always the right basin).
        """
        stages = {"translation": ["translation"], "affine": ["translation", "rigid", "affine"],
                  "homography": ["translation", "rigid", "affine"]}[mode]
        final = {"translation": ["translation"], "affine": ["affine"], "homography": ["homography"]}[mode]
        last = len(self.levels) - 1
        for index, level in enumerate(self.levels):
            steps = list(stages) if index == 0 else []
            if index == last:
                steps += [motion for motion in final if motion not in steps]
            best_score, best = -np.inf, None
            for matrix in (starts if index == 0 else [matrix]):
                warp = level.to_warp(matrix)
                for motion in steps:
                    warp = level.ecc_step(warp, motion)
                score = level.correlation(warp) if index == 0 and len(starts) > 1 else 0.0
                if score > best_score:
                    best_score, best = score, warp
            matrix = level.to_full(np.linalg.inv(best))
        level = self.levels[-1]
        for _ in range(_POLISH_ROUNDS):
            matrix = level.polish(matrix, final[-1])
        return level.mutual_information(matrix, mode) if fine == "mattes" else matrix

    def confidence(self, matrix: np.ndarray) -> float:
        """Correlation of the finest level's features after alignment, clipped to ``[0, 1]``."""
        level = self.levels[-1]
        return float(np.clip(level.correlation(level.to_warp(matrix)), 0.0, 1.0))


class _Level:
    """Both images resampled to one grid (the fixed image's, scaled), and their features."""

    def __init__(self, moving: np.ndarray, fixed: np.ndarray, shape: tuple[int, int], scales: tuple[float, float],
                 criteria: tuple[int, int, float]):
        height, width = shape
        self.shape, self.scales, self.criteria = shape, scales, criteria
        self.fixed_map = resize_matrix(fixed.shape[:2], shape)    # full fixed -> level
        self.moving_map = resize_matrix(moving.shape[:2], shape)  # full moving -> level (the prior)
        self.fixed_image = _resize(fixed, width, height)
        self.moving_image = _resize(moving, width, height)
        self.fixed_features = orientation_features(self.fixed_image, _FEATURE_BLUR, _FEATURE_SMOOTH)
        self.moving_features = orientation_features(self.moving_image, _FEATURE_BLUR, _FEATURE_SMOOTH)
        self.mask = _ring_mask(shape)  # the same grid for both images
        # level pixel -> physical (square) pixel, per axis: x and y of the moving and of the fixed grid
        self.aspect = (moving.shape[1] / width, moving.shape[0] / height, fixed.shape[1] / width, fixed.shape[0] / height)

    def plausible(self, residual: np.ndarray) -> bool:
        """:func:`plausible` for a level moving -> fixed matrix of this level."""
        return plausible(residual, self.shape, self.scales, self.aspect)

    def to_full(self, level_matrix: np.ndarray) -> np.ndarray:
        """Level moving -> level fixed, as full moving -> full fixed."""
        full = np.linalg.inv(self.fixed_map) @ level_matrix @ self.moving_map
        return full / full[2, 2]

    def to_warp(self, full_matrix: np.ndarray) -> np.ndarray:
        """Full moving -> full fixed, as ECC's warp: level fixed -> level moving."""
        level = self.fixed_map @ full_matrix @ np.linalg.inv(self.moving_map)
        warp = np.linalg.inv(level)
        return warp / warp[2, 2]

    def search(self, scales: np.ndarray, rotations: np.ndarray) -> list[np.ndarray]:
        """The best distinct level moving -> fixed similarities over the grid (at most :data:`_STARTS`,
        best first), translation by NCC."""
        height, width = self.shape
        fixed = orientation_features(self.fixed_image, 0.0, 0.0, channels=2)
        pad = int(round(0.5 * (1 - _TEMPLATE_KEEP) * max(height, width))) + 2
        fixed = cv2.copyMakeBorder(fixed, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        tw, th = int(width * _TEMPLATE_KEEP), int(height * _TEMPLATE_KEEP)
        x0, y0 = (width - tw) // 2, (height - th) // 2
        centre = ((width - 1) / 2, (height - 1) / 2)
        found = []
        for scale in scales:
            for angle in rotations:
                rotation = np.vstack([cv2.getRotationMatrix2D(centre, float(angle), float(scale)), [0, 0, 1]])
                turned = cv2.warpAffine(self.moving_image, rotation[:2], (width, height), flags=cv2.INTER_LINEAR)
                template = orientation_features(turned, 0.0, 0.0, channels=2)[y0:y0 + th, x0:x0 + tw]
                scores = cv2.matchTemplate(fixed, template, cv2.TM_CCOEFF_NORMED)
                _, score, _, (px, py) = cv2.minMaxLoc(scores)
                shift = np.array([[1, 0, px - pad - x0], [0, 1, py - pad - y0], [0, 0, 1.0]])
                found.append((score, shift @ rotation))
        found.sort(key=lambda item: -item[0])
        chosen: list[np.ndarray] = []
        for _, matrix in found:
            if all(_corner_shift(matrix, other, self.shape) > _STARTS_APART for other in chosen):
                chosen.append(matrix)
            if len(chosen) == _STARTS:
                break
        return chosen

    def ecc_step(self, warp: np.ndarray, motion: str) -> np.ndarray:
        """One ECC run; its result is kept only if it raises the correlation and is plausible.

        On a level both images share one grid (the prior is applied), so the level's
        moving-to-fixed matrix is the residual that :func:`plausible` judges.
        """
        before = self.correlation(warp)
        start = (warp if motion == "homography" else warp[:2]).astype(np.float32)
        try:
            _, found = cv2.findTransformECCWithMask(
                self.fixed_features, self.moving_features, self.mask, self.mask,
                start, _MOTIONS[motion], self.criteria, 1,
            )
        except cv2.error:  # did not converge, or the overlap vanished
            return warp
        candidate = np.eye(3)
        candidate[: found.shape[0]] = found
        moved = _corner_shift(warp, candidate, self.shape)
        if moved > 0.25 * max(self.shape) or not self.plausible(np.linalg.inv(candidate)):
            return warp
        return candidate if self.correlation(candidate) >= before - 1e-4 else warp

    def polish(self, full_matrix: np.ndarray, motion: str) -> np.ndarray:
        """ECC on the moving image resampled into the fixed grid by ``full_matrix``, features recomputed there.

        The features carry the gradient direction, which a warp of the feature image does not
        turn: after a rotation the moving features disagree with the fixed ones in angle, and
        resampling a scaled image changes its gradients. Recomputing them on the moving image
        already brought into the fixed frame removes that bias; the residual is then small.
        """
        height, width = self.shape
        level_matrix = self.fixed_map @ full_matrix @ np.linalg.inv(self.moving_map)
        flags = cv2.INTER_LINEAR
        moved = cv2.warpPerspective(self.moving_image, level_matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        inside = cv2.warpPerspective(np.ones(self.shape, np.uint8), level_matrix, (width, height), flags=cv2.INTER_NEAREST)
        inside = cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=_BORDER_RING) & self.mask
        if inside.sum() < 0.1 * inside.size:
            return full_matrix
        features = orientation_features(moved, _FEATURE_BLUR, _FEATURE_SMOOTH)
        start = np.eye(3, dtype=np.float32) if motion == "homography" else np.eye(2, 3, dtype=np.float32)
        try:
            _, found = cv2.findTransformECCWithMask(
                self.fixed_features, features, self.mask, inside, start, _MOTIONS[motion], self.criteria, 1,
            )
        except cv2.error:
            return full_matrix
        residual = np.eye(3)
        residual[: found.shape[0]] = found
        if _corner_shift(np.eye(3), residual, self.shape) > 0.05 * max(self.shape):
            return full_matrix
        candidate = self.to_full(np.linalg.inv(residual) @ level_matrix)
        return candidate

    def mutual_information(self, full_matrix: np.ndarray, mode: str) -> np.ndarray:
        """The Mattes MI stage (:mod:`.mattes`) on this level's gray images, kept when plausible."""
        gray = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
                for image in (self.fixed_image, self.moving_image)]
        residual = self.fixed_map @ full_matrix @ np.linalg.inv(self.moving_map)
        refined = mattes.refine(gray[0], gray[1], residual, mode)
        if mattes.moved_too_far(residual, refined, self.shape) or not self.plausible(refined):
            return full_matrix
        return self.to_full(refined)

    def correlation(self, warp: np.ndarray) -> float:
        """ECC's criterion: zero-mean normalized correlation of the features over the overlap."""
        height, width = self.shape
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        warped = cv2.warpPerspective(self.moving_features, warp, (width, height), flags=flags)
        inside = cv2.warpPerspective(self.mask, warp, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
        inside = (inside > 0) & (self.mask > 0)
        if inside.sum() < 64:
            return -1.0
        a = self.fixed_features[inside].astype(np.float64)
        b = warped[inside].astype(np.float64)
        a -= a.mean(axis=0)
        b -= b.mean(axis=0)
        return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-12))


def plausible(residual: np.ndarray, shape: tuple[int, int], scales: tuple[float, float] = (0.25, 4.0),
              aspect: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> bool:
    """Whether a fixed-frame residual (transform after the prior) is one a camera pair can have.

    ``scales``: the smallest and largest residual scale allowed (see :meth:`SearchRange.scale_bounds`);
    ``aspect``: the physical pixel size of one grid pixel in x and y, of the moving then of the fixed
    image (the prior resizes each axis by its own factor when the aspect ratios differ). The linear
    part at the image centre, in physical pixels, must not stretch one direction more than
    :data:`MAX_ANISOTROPY` times the other; its scale must lie within ``scales``; a homography must
    keep the image's corners in front of the camera (no fold, no horizon inside).
    """
    height, width = shape
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], dtype=np.float64)
    if np.any(corners @ residual[2] <= 0.1 * residual[2, 2]):
        return False
    centre = np.array([(width - 1) / 2, (height - 1) / 2, 1.0])

    def project(point: np.ndarray) -> np.ndarray:
        mapped = residual @ point
        return mapped[:2] / mapped[2]

    jacobian = np.stack([project(centre + [1, 0, 0]) - project(centre), project(centre + [0, 1, 0]) - project(centre)], axis=1)
    if np.linalg.det(jacobian) <= 1e-12:
        return False
    moving_x, moving_y, fixed_x, fixed_y = aspect
    physical = np.diag([fixed_x, fixed_y]) @ jacobian @ np.diag([1 / moving_x, 1 / moving_y])
    singular = np.linalg.svd(physical, compute_uv=False)
    scale = float(np.sqrt(np.linalg.det(jacobian)))
    return singular[0] / singular[1] <= MAX_ANISOTROPY and scales[0] <= scale <= scales[1]


def _check(result: Registration, problem: _Problem, min_confidence: float, name: str) -> None:
    """Raise :class:`RegistrationError` for a result that must not be applied."""
    level = problem.levels[-1]
    residual = level.fixed_map @ result.matrix @ np.linalg.inv(level.moving_map)
    if not level.plausible(residual):
        low, high = level.scales
        raise RegistrationError(name, "the transform found is degenerate or implausible (a fold, a shear or stretch "
                                f"beyond {MAX_ANISOTROPY:g}:1, or a scale outside {low:.2f}-{high:.2f} of the images' "
                                "sizes; widen SearchRange for other fields of view)")
    overlap = result.overlap()
    if overlap < MIN_OVERLAP:
        raise RegistrationError(name, f"the images overlap on {overlap:.0%} of the fixed frame, below {MIN_OVERLAP:.0%}")
    if result.confidence < min_confidence:
        raise RegistrationError(
            name, f"confidence {result.confidence:.3f} is below {min_confidence:.3f}: too little shared structure "
            "(unrelated images, or a misalignment beyond the search range)",
        )


def _fit(shape: tuple[int, int], longest: int) -> tuple[int, int]:
    """``shape`` scaled so that its longest side is at most ``longest`` (never enlarged)."""
    height, width = shape
    factor = min(1.0, longest / max(height, width))
    return max(MIN_SIDE // 2, round(height * factor)), max(MIN_SIDE // 2, round(width * factor))


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if (height, width) == image.shape[:2]:
        return image
    shrink = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _ring_mask(shape: tuple[int, int]) -> np.ndarray:
    """All ones but a :data:`_BORDER_RING`-pixel frame: the filters extrapolate there."""
    mask = np.zeros(shape, np.uint8)
    ring = _BORDER_RING
    mask[ring:shape[0] - ring, ring:shape[1] - ring] = 1
    return mask


def _corner_gaps(first: np.ndarray, second: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Distances between the images of the four corners of a ``shape`` grid under two matrices."""
    height, width = shape
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], dtype=np.float64).T
    a, b = first @ corners, second @ corners
    return np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0)


def _corner_shift(first: np.ndarray, second: np.ndarray, shape: tuple[int, int]) -> float:
    """Largest corner distance between two warps of a ``shape`` grid."""
    return float(np.max(_corner_gaps(first, second, shape)))


def _corner_distance(first: np.ndarray, second: np.ndarray, shape: tuple[int, int]) -> float:
    """Mean corner distance between two matrices on a ``shape`` grid."""
    return float(np.mean(_corner_gaps(first, second, shape)))
