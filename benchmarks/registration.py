"""Registration benchmark: known random misalignments of real aligned pairs, ours against two baselines.

Each pair of the test sets (TNO-42, RoadScene test50, Harvard test) becomes one synthetic case
per family:

* fixed image: the visible (MRI) image cropped by 10 % on each side;
* moving image: the infrared (CT/PET/SPECT) image resampled through a known random transform
  ``T`` onto a canvas of the same size (black where the transform leaves the source), so that
  ``T`` maps moving pixels to fixed pixels.

Families of growing difficulty, each adding to the one before: ``translation`` (up to 10 % of the
size on each axis), ``rotation`` (+ up to 5 degrees), ``scale`` (+ 0.8-1.25), ``affine`` (+ shear up
to 0.05), ``homography`` (+ each corner moved by up to 4 % of the size). Seeded per pair and
family, so ``--limit`` does not change the cases drawn.

Score: the mean distance, in fixed-image pixels, between the four moving-image corners mapped by
the estimated and by the true transform, against two references:

* ``dataset``: the true transform is ``T`` (the source pair taken as perfectly aligned);
* ``re-registered``: ``T`` composed with the residual alignment of the source pair, measured by
  contrafuse on the same crops from the identity (the sources are not perfectly aligned: TNO and
  Harvard pairs are off by several pixels; ``docs/registration.md`` shows examples).

A method may report a failure (ours raises ``RegistrationError``; a baseline that throws or finds
too few matches): those are counted apart from wrong results. Times are measured on the same
cases resampled to 640x480.

Hard cases (``--hard``), where a wrong result is easy to get and must be refused:

* ``other-scene``: the moving image of one pair against the fixed image of another pair of the
  same dataset (half the set further on); every accepted result is a false accept;
* ``scale-2x``: the ``affine`` family with a scale of 2 or 1/2 on top (beyond the search range);
* ``low-overlap``: the ``affine`` family shifted by 30-40 % of the size on both axes;
* ``night``: LLVIP test pairs at the sizes of issue 25 (infrared 320x240 against visible 480x360,
  the infrared shifted by up to 6 % of the size), scored against the dataset's alignment.

A **false accept** is a result returned (not refused) more than ``--false-accept`` (10) px from
the re-registered reference, or any result returned for ``other-scene``. Our method runs with
no confidence threshold and the threshold is applied afterwards, so one run gives the false
accepts and the right results at every threshold (the calibration table). Its two-way check of
uncertain results (``VERIFY_BELOW``, ``--verify-below``) still runs: a result that fails it is
reported as a failure at every threshold.

    python benchmarks/registration.py                 # everything (about 10 minutes on 2 cores)
    python benchmarks/registration.py --limit 8       # 8 pairs per dataset
    python benchmarks/registration.py --families affine --hard other-scene --methods contrafuse
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from contrafuse.data import dataset_pairs
from contrafuse.io import read_image
from contrafuse.registration import (DEFAULT_ECC_TOLERANCE, DEFAULT_MIN_CONFIDENCE, DEFAULT_WORKING_SIZE, VERIFY_BELOW,
                                     RegistrationError, estimate, to_gray01)
from contrafuse.registration.result import resize_matrix

DATASETS = (("tno42", "test"), ("roadscene", "test50"), ("harvard", "test"))
FAMILIES = ("translation", "rotation", "scale", "affine", "homography")
HARD = ("other-scene", "scale-2x", "low-overlap", "night")
FAMILY_MODE = {"translation": "translation", "rotation": "affine", "scale": "affine", "affine": "affine",
               "homography": "homography", **{family: "affine" for family in HARD}}
METHODS = ("contrafuse", "contrafuse-verify", "contrafuse-mattes", "ecc-intensity", "sift-ransac")
MARGIN = 0.1
TOLERANCE = 2.0
FALSE_ACCEPT = 10.0  # px: a returned result further than this from the reference is a false accept
THRESHOLDS = (0.20, 0.25, 0.28, 0.30, 0.32, 0.35, 0.40)
NIGHT = ("llvip", "test")


# -- synthetic cases ---------------------------------------------------------------------------

def about_centre(width: int, height: int, linear: np.ndarray) -> np.ndarray:
    """The 3x3 map that applies ``linear`` about the centre of a ``width`` x ``height`` image."""
    centre = np.array([[1, 0, (width - 1) / 2], [0, 1, (height - 1) / 2], [0, 0, 1.0]])
    return centre @ linear @ np.linalg.inv(centre)


def hard_transform(rng: np.random.Generator, family: str, width: int, height: int) -> np.ndarray:
    """The ``affine`` family's transform with the hard family's extra: a 2x scale, or a large shift."""
    transform = random_transform(rng, "affine", width, height)
    if family == "scale-2x":
        factor = 2.0 if rng.random() < 0.5 else 0.5
        return about_centre(width, height, np.diag([factor, factor, 1.0])) @ transform
    if family == "low-overlap":
        shift = rng.uniform(0.3, 0.4, 2) * rng.choice([-1, 1], 2) * (width, height)
        return np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1.0]]) @ transform
    return transform


def random_transform(rng: np.random.Generator, family: str, width: int, height: int) -> np.ndarray:
    """A random moving -> fixed 3x3 transform of ``family`` about the image centre."""
    if family in HARD:
        return hard_transform(rng, family, width, height)
    level = FAMILIES.index(family)
    shift = rng.uniform(-0.1, 0.1, 2) * (width, height)
    angle = np.deg2rad(rng.uniform(-5, 5)) if level >= 1 else 0.0
    scale = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))) if level >= 2 else 1.0
    shear = rng.uniform(-0.05, 0.05) if level >= 3 else 0.0
    centre = np.array([[1, 0, (width - 1) / 2], [0, 1, (height - 1) / 2], [0, 0, 1.0]])
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    linear = rotation @ np.diag([scale, scale, 1.0]) @ np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1.0]])
    transform = centre @ linear @ np.linalg.inv(centre)
    transform[:2, 2] += shift
    if level >= 4:
        corners = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
        moved = corners + (rng.uniform(-0.04, 0.04, (4, 2)) * (width, height)).astype(np.float32)
        transform = transform @ cv2.getPerspectiveTransform(corners, moved)
    return transform / transform[2, 2]


@dataclass
class Case:
    dataset: str
    name: str
    family: str
    moving: np.ndarray
    fixed: np.ndarray
    truth: np.ndarray | None        # moving -> fixed, the source pair taken as aligned; None: unrelated images
    moving_crop: np.ndarray | None  # the unperturbed moving crop (re-registered reference); None: the dataset's


def case_rng(seed: int, dataset: str, name: str, family: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{dataset}/{name}/{family}".encode())])


def other_scene_case(dataset: str, name: str, ir: np.ndarray, other_vis: np.ndarray, seed: int) -> Case:
    """The moving image of one pair (``affine`` family) against the fixed crop of another pair."""
    case = make_case(dataset, name, "affine", ir, other_vis, seed)
    return Case(dataset, name, "other-scene", case.moving, case.fixed, None, None)


def night_case(name: str, ir: np.ndarray, vis: np.ndarray, seed: int) -> Case:
    """Issue 25's geometry: a 4:3 crop of the visible image at 480x360, the same crop shifted by up
    to 6 % at 320x240 in infrared."""
    height, width = vis.shape[:2]
    crop_w = min(width, round(height * 4 / 3)) * 0.9
    crop_h = crop_w * 3 / 4
    x0, y0 = (width - crop_w) / 2, (height - crop_h) / 2
    dx, dy = case_rng(seed, NIGHT[0], name, "night").uniform(-0.06, 0.06, 2) * (crop_w, crop_h)

    def crop(image: np.ndarray, x: float, y: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        to_crop = resize_matrix((crop_h, crop_w), size[::-1]) @ np.array([[1, 0, -x], [0, 1, -y], [0, 0, 1.0]])
        return cv2.warpAffine(image, to_crop[:2], size, flags=cv2.INTER_AREA), to_crop

    fixed, to_fixed = crop(vis, x0, y0, (480, 360))
    moving, to_moving = crop(ir, x0 + dx, y0 + dy, (320, 240))
    return Case(NIGHT[0], name, "night", moving, fixed, to_fixed @ np.linalg.inv(to_moving), None)


def make_case(dataset: str, name: str, family: str, ir: np.ndarray, vis: np.ndarray, seed: int) -> Case:
    height, width = vis.shape[:2]
    x0, y0 = round(MARGIN * width), round(MARGIN * height)
    crop_w, crop_h = width - 2 * x0, height - 2 * y0
    truth = random_transform(case_rng(seed, dataset, name, family), family, crop_w, crop_h)
    offset = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]])
    # moving pixel p shows the source point offset @ truth @ p
    moving = cv2.warpPerspective(ir, offset @ truth, (crop_w, crop_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return Case(dataset, name, family, moving, vis[y0:y0 + crop_h, x0:x0 + crop_w], truth,
                ir[y0:y0 + crop_h, x0:x0 + crop_w])


def corner_error(estimated: np.ndarray, truth: np.ndarray, shape: tuple[int, int]) -> float:
    height, width = shape[:2]
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], float).T
    a, b = estimated @ corners, truth @ corners
    return float(np.mean(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0)))


# -- methods: each returns (moving -> fixed 3x3 matrix, confidence), or raises Failure --------------
# the baselines have no confidence (inf: whatever they return is accepted)

class Failure(Exception):
    """The method reported that it could not register the pair."""


WORKING_SIZE = DEFAULT_WORKING_SIZE  # --working-size: ours and the reference
CHECK_BELOW = VERIFY_BELOW  # --verify-below: ours
ECC_TOLERANCE = DEFAULT_ECC_TOLERANCE  # --ecc-tolerance: ours (ECC's stopping rule)
REFERENCE_ECC_TOLERANCE = 1e-5  # the reference always: a faster setting of ours is not scored against a coarser reference
Estimate = tuple[np.ndarray, float]


def run_contrafuse(moving: np.ndarray, fixed: np.ndarray, mode: str, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                   verify: bool = False, fine: str = "ecc") -> Estimate:
    try:
        found = estimate(ir=moving, vis=fixed, mode=mode, verify=verify, min_confidence=min_confidence,
                         verify_below=CHECK_BELOW, working_size=WORKING_SIZE, fine=fine, ecc_tolerance=ECC_TOLERANCE)
    except RegistrationError as exc:
        raise Failure(exc.problem) from None
    return found.matrix, found.confidence


def run_contrafuse_verified(moving: np.ndarray, fixed: np.ndarray, mode: str,
                            min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> Estimate:
    """contrafuse with ``verify=True``: both directions registered, a disagreement refused."""
    return run_contrafuse(moving, fixed, mode, min_confidence, verify=True)


def run_contrafuse_mattes(moving: np.ndarray, fixed: np.ndarray, mode: str,
                          min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> Estimate:
    """contrafuse with the optional Mattes mutual-information fine stage (SimpleITK)."""
    return run_contrafuse(moving, fixed, mode, min_confidence, fine="mattes")


def run_ecc_intensity(moving: np.ndarray, fixed: np.ndarray, mode: str, min_confidence: float = 0.0) -> Estimate:
    """What a user tries first: ``cv2.findTransformECC`` on the gray images, from the identity."""
    fixed_gray = to_gray01(fixed)
    moving_gray = cv2.resize(to_gray01(moving), fixed_gray.shape[::-1], interpolation=cv2.INTER_AREA)
    motion = {"translation": cv2.MOTION_TRANSLATION, "affine": cv2.MOTION_AFFINE, "homography": cv2.MOTION_HOMOGRAPHY}[mode]
    start = np.eye(3, dtype=np.float32) if mode == "homography" else np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-6)
    try:
        _, warp = cv2.findTransformECC(fixed_gray, moving_gray, start, motion, criteria, None, 5)
    except cv2.error as exc:
        raise Failure(f"ECC did not converge ({str(exc).splitlines()[-1][:60]})") from None
    full = np.eye(3)
    full[: warp.shape[0]] = warp
    prior = np.diag([fixed_gray.shape[1] / moving.shape[1], fixed_gray.shape[0] / moving.shape[0], 1.0])
    return np.linalg.inv(full) @ prior, np.inf


_SIFT = None


def run_sift_ransac(moving: np.ndarray, fixed: np.ndarray, mode: str, min_confidence: float = 0.0) -> Estimate:
    """SIFT features, Lowe's ratio test, RANSAC (``estimateAffine2D`` / ``findHomography``)."""
    global _SIFT
    _SIFT = _SIFT or cv2.SIFT_create()
    to_u8 = lambda image: np.round(to_gray01(image) * 255).astype(np.uint8)  # noqa: E731
    keys_m, desc_m = _SIFT.detectAndCompute(to_u8(moving), None)
    keys_f, desc_f = _SIFT.detectAndCompute(to_u8(fixed), None)
    if desc_m is None or desc_f is None or len(keys_m) < 4 or len(keys_f) < 4:
        raise Failure("too few SIFT keypoints")
    matches = [m for m, n in (p for p in cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_m, desc_f, k=2) if len(p) == 2)
               if m.distance < 0.75 * n.distance]
    if len(matches) < 8:
        raise Failure(f"{len(matches)} matches after the ratio test")
    src = np.float32([keys_m[m.queryIdx].pt for m in matches])
    dst = np.float32([keys_f[m.trainIdx].pt for m in matches])
    if mode == "homography":
        matrix, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    else:
        affine, inliers = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
        matrix = None if affine is None else np.vstack([affine, [0, 0, 1]])
    if matrix is None or inliers is None or int(inliers.sum()) < 8:
        raise Failure("RANSAC found no consistent model")
    if mode == "translation":
        keep = inliers.ravel() > 0
        matrix = np.eye(3)
        matrix[:2, 2] = np.median(dst[keep] - src[keep], axis=0)
    return matrix / matrix[2, 2], np.inf


RUNNERS = {"contrafuse": run_contrafuse, "contrafuse-verify": run_contrafuse_verified,
           "contrafuse-mattes": run_contrafuse_mattes, "ecc-intensity": run_ecc_intensity, "sift-ransac": run_sift_ransac}


# -- the run ------------------------------------------------------------------------------------

@dataclass
class Result:
    dataset: str
    name: str
    family: str
    method: str
    error_dataset: float      # inf for a reported failure, and for any result on unrelated images
    error_reregistered: float
    failure: str | None
    source_residual: float    # how far the re-registered source is from the dataset's alignment
    confidence: float = np.inf  # ours (run without a threshold); inf for the baselines, nan for a failure

    def accepted(self, threshold: float = DEFAULT_MIN_CONFIDENCE) -> bool:
        """Returned by the method, with ours refusing what is below ``threshold``."""
        return self.failure is None and self.confidence >= threshold

    def false_accept(self, threshold: float = DEFAULT_MIN_CONFIDENCE) -> bool:
        """Accepted, and more than :data:`FALSE_ACCEPT` px off (any result on unrelated images)."""
        return self.accepted(threshold) and not self.error_reregistered <= FALSE_ACCEPT


def reference(case: Case) -> np.ndarray:
    """Residual alignment of the source crops (moving -> fixed), by contrafuse from the identity;
    the identity where the case has no unperturbed crop (night: the dataset's alignment)."""
    if case.moving_crop is None:
        return np.eye(3)
    mode = FAMILY_MODE[case.family]
    return estimate(ir=case.moving_crop, vis=case.fixed, mode=mode, initial=np.eye(3), min_confidence=0.0, verify_below=0.0,
                    working_size=WORKING_SIZE, ecc_tolerance=REFERENCE_ECC_TOLERANCE).matrix


def score(case: Case, residual: np.ndarray, matrix: np.ndarray) -> tuple[float, float]:
    """(error against the dataset, error against the re-registered source); inf for unrelated images."""
    if case.truth is None:
        return np.inf, np.inf
    return (corner_error(matrix, case.truth, case.moving.shape),
            corner_error(matrix, residual @ case.truth, case.moving.shape))


def evaluate(cases: list[Case], methods: list[str], verbose: bool) -> list[Result]:
    results = []
    for case in cases:
        residual = reference(case)
        for method in methods:
            confidence = np.nan
            try:  # ours without a threshold: it is applied afterwards, at every value of the calibration
                matrix, confidence = RUNNERS[method](case.moving, case.fixed, FAMILY_MODE[case.family], 0.0)
                errors, failure = score(case, residual, matrix), None
            except Failure as exc:
                errors, failure = (np.inf, np.inf), str(exc)
            source = corner_error(residual, np.eye(3), case.moving.shape)
            result = Result(case.dataset, case.name, case.family, method, *errors, failure, source, float(confidence))
            results.append(result)
            if verbose and not (result.accepted() and errors[1] <= TOLERANCE):
                what = (f"reported failure: {failure}" if failure else
                        f"error {errors[0]:.1f} px (re-registered {errors[1]:.1f} px), confidence {confidence:.3f}")
                print(f"  {case.family:11s} {method:17s} {case.dataset}/{case.name}: {what}", file=sys.stderr)
    return results


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = CLOCKS["wall"]  # --clock: cpu measures this process's CPU time, not the queue on a loaded machine


def time_methods(cases: list[Case], methods: list[str], count: int) -> dict[tuple[str, str], float]:
    """Median seconds per case with both images resampled to 640x480, per (family, method)."""
    times: dict[tuple[str, str], list[float]] = {}
    per_family: dict[str, list[Case]] = {}
    for case in cases:
        if case.family not in HARD:
            per_family.setdefault(case.family, []).append(case)
    for family, chosen in per_family.items():
        for case in chosen[:: max(1, len(chosen) // count)][:count]:
            moving = cv2.resize(case.moving, (640, 480), interpolation=cv2.INTER_LINEAR)
            fixed = cv2.resize(case.fixed, (640, 480), interpolation=cv2.INTER_LINEAR)
            for method in methods:
                start = CLOCK()
                try:
                    RUNNERS[method](moving, fixed, FAMILY_MODE[family], DEFAULT_MIN_CONFIDENCE)
                except Failure:
                    pass
                times.setdefault((family, method), []).append(CLOCK() - start)
    return {key: float(np.median(values)) for key, values in times.items()}


def table(results: list[Result], times: dict[tuple[str, str], float], families: list[str], methods: list[str]) -> str:
    lines = [
        f"| family | method | cases | ≤{TOLERANCE:g} px (dataset) | ≤{TOLERANCE:g} px (re-registered) | wrong (>{TOLERANCE:g} px, re-reg.) "
        f"| false accepts (>{FALSE_ACCEPT:g} px) | failures reported | median error px (dataset / re-reg.) | median s per 640x480 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for family in families:
        for method in methods:
            rows = [r for r in results if r.family == family and r.method == method]
            if not rows:
                continue
            n = len(rows)
            accepted = np.array([r.accepted() for r in rows])
            data = np.array([r.error_dataset for r in rows])
            rereg = np.array([r.error_reregistered for r in rows])
            within = (f"{100 * np.mean(accepted & (data <= TOLERANCE)):.1f} % | {100 * np.mean(accepted & (rereg <= TOLERANCE)):.1f} %"
                      if family != "other-scene" else "- | -")
            wrong = int(np.sum(accepted & ~(rereg <= TOLERANCE)))
            false = sum(r.false_accept() for r in rows)
            scored = accepted & np.isfinite(rereg)
            median = (f"{np.median(data[scored]):.2f} / {np.median(rereg[scored]):.2f}" if scored.any() else "-")
            seconds = times.get((family, method))
            lines.append(
                f"| {family} | {method} | {n} | {within} | {wrong} | {false} ({100 * false / n:.1f} %) | {n - int(accepted.sum())} "
                f"| {median} | {'-' if seconds is None else f'{seconds:.3f}'} |"
            )
    return "\n".join(lines)


def false_accepts(results: list[Result], methods: list[str]) -> str:
    """Per method: false accepts over every case run (benchmark and hard families), at the default threshold."""
    lines = []
    for method in methods:
        rows = [r for r in results if r.method == method]
        false = sum(r.false_accept() for r in rows)
        lines.append(f"{method}: {false} false accepts (> {FALSE_ACCEPT:g} px, or any result on unrelated images) of "
                     f"{len(rows)} cases ({100 * false / max(1, len(rows)):.2f} %) at the default threshold "
                     f"{DEFAULT_MIN_CONFIDENCE:g}")
    return "\n".join(lines)


def calibration(results: list[Result], method: str = "contrafuse") -> str:
    """False accepts over all cases, and right results (≤ 2 px re-registered) of the benchmark families,
    at each threshold of :data:`THRESHOLDS`; per group (infrared-visible, medical)."""
    groups = {"infrared-visible": lambda r: r.dataset != "harvard", "medical": lambda r: r.dataset == "harvard",
              "all": lambda r: True}
    lines = ["| threshold | " + " | ".join(f"{g}: false accepts | {g}: ≤{TOLERANCE:g} px" for g in groups) + " |",
             "|---:|" + "---:|---:|" * len(groups)]
    for threshold in THRESHOLDS:
        cells = []
        for keep in groups.values():
            rows = [r for r in results if r.method == method and keep(r)]
            plain = [r for r in rows if r.family not in HARD]
            false = sum(r.false_accept(threshold) for r in rows)
            right = sum(r.accepted(threshold) and r.error_reregistered <= TOLERANCE for r in plain)
            cells += [f"{false} / {len(rows)} ({100 * false / max(1, len(rows)):.1f} %)",
                      f"{100 * right / max(1, len(plain)):.1f} %"]
        lines.append(f"| {threshold:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def family_by_dataset(families: list[str], corner: str, column: Callable[[str], str],
                      row: Callable[[str], str], cell: Callable[[str, str], str]) -> str:
    """A table with a row per family and a column per dataset."""
    lines = [f"| {corner} | " + " | ".join(column(d) for d, _ in DATASETS) + " |", "|---|" + "---:|" * len(DATASETS)]
    lines += [f"| {row(family)} | " + " | ".join(cell(family, d) for d, _ in DATASETS) + " |" for family in families]
    return "\n".join(lines)


def per_dataset(results: list[Result], families: list[str]) -> str:
    def cell(family: str, dataset: str) -> str:
        rows = [r for r in results if r.family == family and r.method == "contrafuse" and r.dataset == dataset]
        if not rows:
            return "-"
        data = np.mean([r.accepted() and r.error_dataset <= TOLERANCE for r in rows]) * 100
        rereg = np.mean([r.accepted() and r.error_reregistered <= TOLERANCE for r in rows]) * 100
        return f"{data:.0f} % / {rereg:.0f} % (n={len(rows)})"

    return family_by_dataset(families, "family", lambda d: f"{d} ≤{TOLERANCE:g} px (dataset / re-reg.)", str, cell)


def source_residuals(results: list[Result], families: list[str]) -> str:
    """How far each dataset's own alignment is from the re-registered one (mean corner px)."""
    def cell(family: str, dataset: str) -> str:
        values = [r.source_residual for r in results if r.family == family and r.method == results[0].method and r.dataset == dataset]
        return f"{np.median(values):.1f}, {100 * np.mean(np.array(values) > TOLERANCE):.0f} %" if values else "-"

    return family_by_dataset(families, "family (model)", lambda d: f"{d}: median px, > {TOLERANCE:g} px",
                             lambda family: f"{family} ({FAMILY_MODE[family]})", cell)


def load_cases(limit: int | None, families: list[str], seed: int, root: str | None, datasets: list[str],
               hard: list[str] = ()) -> list[Case]:
    cases = []
    for dataset, split in DATASETS:
        if dataset not in datasets:
            continue
        pairs = spaced(dataset_pairs(dataset, split, root), limit)
        images = [(read_image(pair.ir), read_image(pair.vis)) for pair in pairs]
        for index, (pair, (ir, vis)) in enumerate(zip(pairs, images)):
            for family in families + [f for f in hard if f in ("scale-2x", "low-overlap")]:
                cases.append(make_case(dataset, pair.name, family, ir, vis, seed))
            if "other-scene" in hard and len(pairs) > 1:
                other_vis = images[(index + len(pairs) // 2) % len(pairs)][1]
                cases.append(other_scene_case(dataset, pair.name, ir, other_vis, seed))
    if "night" in hard:
        for pair in spaced(dataset_pairs(*NIGHT, root), limit):
            cases.append(night_case(pair.name, read_image(pair.ir), read_image(pair.vis), seed))
    return cases


def spaced(pairs: list, limit: int | None) -> list:
    """``limit`` evenly spaced pairs (all without a limit)."""
    return pairs[:: max(1, len(pairs) // limit)][:limit] if limit else pairs


def print_saved(path: Path) -> int:
    """The tables of the results a run wrote with ``--json``."""
    results = [Result(**row) for row in json.loads(path.read_text())]
    families = [f for f in FAMILIES + HARD if any(r.family == f for r in results)]
    methods = [m for m in METHODS if any(r.method == m for r in results)]
    print(f"{len(results)} results of {path} ({', '.join(families)}); threshold {DEFAULT_MIN_CONFIDENCE:g}\n")
    print(table(results, {}, families, methods))
    print()
    print(false_accepts(results, methods))
    if "contrafuse" in methods:
        print("\nthreshold calibration (contrafuse):\n")
        print(calibration(results))
    print("\ncontrafuse per dataset:\n")
    print(per_dataset(results, [f for f in families if f in FAMILIES]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="pairs per dataset (evenly spaced); default all")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random misalignments (default 0)")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma list (default {','.join(FAMILIES)})")
    parser.add_argument("--hard", default=",".join(HARD), help=f"comma list of hard families (default {','.join(HARD)}; "
                        "'' for none)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list (default {','.join(METHODS)})")
    parser.add_argument("--datasets", default=",".join(d for d, _ in DATASETS), help="comma list (default: all three)")
    parser.add_argument("--timing", type=int, default=10, help="cases per family timed at 640x480 (default 10; 0: none)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="what the timing measures: wall-clock (default) or this process's CPU time")
    parser.add_argument("--working-size", type=int, default=DEFAULT_WORKING_SIZE,
                        help=f"contrafuse's working size, for it and the reference (default {DEFAULT_WORKING_SIZE})")
    parser.add_argument("--verify-below", type=float, default=VERIFY_BELOW,
                        help=f"contrafuse's two-way check below this confidence (default {VERIFY_BELOW}; 0: off, "
                        "the behaviour before 2026-12-08)")
    parser.add_argument("--ecc-tolerance", type=float, default=DEFAULT_ECC_TOLERANCE,
                        help=f"contrafuse's ECC stopping rule (default {DEFAULT_ECC_TOLERANCE:g}; 1e-5 before 2026-12-08); "
                        f"the reference always uses {REFERENCE_ECC_TOLERANCE:g}")
    parser.add_argument("--data", default=None, help="data root (default: $CONTRAFUSE_DATA or ../shared/data)")
    parser.add_argument("--json", type=Path, default=None, help="write every result to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="list every failure and wrong result on stderr")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="print the tables of a --json file of an earlier run (no timing) instead of running; "
                        "the results are threshold-free, so this shows them at the current default threshold")
    args = parser.parse_args(argv)
    if args.from_json:
        return print_saved(args.from_json)
    families = [f for f in args.families.split(",") if f]
    methods = [m for m in args.methods.split(",") if m]
    hard = [h for h in args.hard.split(",") if h]
    unknown = sorted(set(families) - set(FAMILIES)) + sorted(set(methods) - set(METHODS)) + sorted(set(hard) - set(HARD))
    if unknown:
        parser.error(f"unknown family or method: {', '.join(unknown)}")
    global WORKING_SIZE, CLOCK, CHECK_BELOW, ECC_TOLERANCE
    WORKING_SIZE, CLOCK, CHECK_BELOW = args.working_size, CLOCKS[args.clock], args.verify_below
    ECC_TOLERANCE = args.ecc_tolerance
    cases = load_cases(args.limit, families, args.seed, args.data, args.datasets.split(","), hard)
    started = time.perf_counter()
    results = evaluate(cases, methods, args.verbose)
    times = time_methods(cases, methods, args.timing) if args.timing else {}
    print(f"{len(cases)} cases ({', '.join(families + hard)}), seed {args.seed}, OpenCV {cv2.__version__}, "
          f"{time.perf_counter() - started:.0f} s; times: {args.clock} clock\n")
    print(table(results, times, families + hard, methods))
    print()
    print(false_accepts(results, methods))
    print("\nthreshold calibration (contrafuse; false accepts over all cases, right results over the benchmark families):\n")
    print(calibration(results))
    print("\ncontrafuse per dataset:\n")
    print(per_dataset(results, families))
    print("\nsource pairs: distance of the re-registered source from the dataset's alignment:\n")
    print(source_residuals(results, families))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
