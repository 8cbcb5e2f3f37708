"""An optional fine stage: Mattes mutual information (SimpleITK, extra ``itk``) from our estimate.

Mutual information compares the joint histogram of the two images' intensities, so it needs no
intensity relation at all, only a consistent one; it is the usual criterion for MRI against
CT/PET. It runs on the finest working grid, after the gradient-orientation ECC stages and their
polish, starting from their result, for ``translation`` and ``affine`` (SimpleITK has no 2-D
projective transform, so a homography keeps the ECC result). A result that moves a corner by
more than :data:`MAX_MOVE` of the grid, or that the caller judges implausible, is dropped.
"""
from __future__ import annotations

import numpy as np

from ..errors import ContrafuseError

MAX_MOVE = 0.05
"""Largest corner move of the MI stage, as a fraction of the grid's longest side."""

BINS = 32
SAMPLING = 0.25   # share of the fixed grid's pixels the metric samples, at random (seeded)
ITERATIONS = 150


def simpleitk():
    """The SimpleITK module, or a :class:`ContrafuseError` saying how to install it."""
    try:
        import SimpleITK
    except ImportError:
        raise ContrafuseError("the Mattes mutual-information stage needs SimpleITK: pip install 'contrafuse[itk]'") from None
    return SimpleITK


def refine(fixed: np.ndarray, moving: np.ndarray, residual: np.ndarray, mode: str) -> np.ndarray:
    """Refine a grid moving -> fixed ``residual`` (3x3) by maximising Mattes MI; both images gray
    float32 on one grid. Returns the refined residual (``residual`` itself for a homography)."""
    if mode not in ("translation", "affine"):
        return residual
    sitk = simpleitk()
    fixed_image = sitk.GetImageFromArray(np.ascontiguousarray(fixed, dtype=np.float32))
    moving_image = sitk.GetImageFromArray(np.ascontiguousarray(moving, dtype=np.float32))
    inverse = np.linalg.inv(residual)  # ITK maps fixed points to moving points
    inverse /= inverse[2, 2]
    if mode == "translation":
        start = sitk.TranslationTransform(2, inverse[:2, 2].tolist())
    else:
        start = sitk.AffineTransform(inverse[:2, :2].ravel().tolist(), inverse[:2, 2].tolist(), (0.0, 0.0))
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING, 7)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=0.5, minStep=1e-4, numberOfIterations=ITERATIONS,
                                                     relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SetInitialTransform(start, inPlace=True)
    try:
        method.Execute(fixed_image, moving_image)
    except RuntimeError:  # ITK: too few samples in the overlap, or the optimiser failed
        return residual
    found = np.eye(3)
    parameters = np.array(start.GetParameters())
    if mode == "translation":
        found[:2, 2] = parameters
    else:
        linear, shift = parameters[:4].reshape(2, 2), parameters[4:]
        centre = np.array(start.GetFixedParameters())
        found[:2, :2], found[:2, 2] = linear, shift + centre - linear @ centre
    refined = np.linalg.inv(found)
    return refined / refined[2, 2]


def moved_too_far(before: np.ndarray, after: np.ndarray, shape: tuple[int, int]) -> bool:
    """Whether the MI stage moved a grid corner by more than :data:`MAX_MOVE` of the longest side."""
    height, width = shape
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], float).T
    a, b = before @ corners, after @ corners
    gaps = np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0)
    return float(gaps.max()) > MAX_MOVE * max(shape)
