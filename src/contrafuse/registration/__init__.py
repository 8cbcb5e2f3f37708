"""Registration of misaligned pairs: find where the infrared image lies in the visible one.

    >>> from contrafuse import registration
    >>> reg = registration.estimate(ir=ir, vis=vis, mode="affine")   # ir, vis: numpy images
    >>> aligned_ir = reg.warp(ir)                                     # in vis's frame
    >>> reg.save("pair.json"); reg = registration.Registration.load("pair.json")
    >>> rig = registration.align_rig(ir="ir/", vis="vis/")           # one transform for a fixed rig

Numpy and OpenCV only (no torch, no model): registration runs before any model sees a pair.
Method, confidence and failure behaviour: ``docs/registration.md``.
"""
from ..errors import RegistrationError
from .files import AlignReport, Aligned, align_folders, align_pair, output_stem, read_pair, write_alignment
from .method import (
    DEFAULT_ECC_TOLERANCE,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_WORKING_SIZE,
    FINE_STAGES,
    VERIFY_BELOW,
    SearchRange,
    check_ecc_tolerance,
    estimate,
    orientation_features,
    to_gray01,
)
from .result import DIRECTION_CHOICES, DIRECTIONS, MODES, Registration
from .rig import RigError, RigEstimate, align_rig, estimate_rig, write_rig

__all__ = [
    "DEFAULT_ECC_TOLERANCE",
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_WORKING_SIZE",
    "DIRECTION_CHOICES",
    "DIRECTIONS",
    "FINE_STAGES",
    "MODES",
    "VERIFY_BELOW",
    "AlignReport",
    "Aligned",
    "Registration",
    "RegistrationError",
    "RigError",
    "RigEstimate",
    "SearchRange",
    "align_folders",
    "align_pair",
    "align_rig",
    "check_ecc_tolerance",
    "estimate",
    "estimate_rig",
    "orientation_features",
    "output_stem",
    "read_pair",
    "to_gray01",
    "write_alignment",
    "write_rig",
]
