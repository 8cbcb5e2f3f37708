"""Exceptions raised by contrafuse. Every message names the file it is about."""
from __future__ import annotations

from pathlib import Path


class ContrafuseError(Exception):
    """Base class of every error contrafuse raises on purpose."""


class ContrafuseWarning(UserWarning):
    """Something a user should know about an input that was still used (e.g. a multi-frame file)."""


class ImageReadError(ContrafuseError):
    """An input file is missing, empty, truncated or not an image."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class WriteError(ContrafuseError):
    """An output cannot be written: it exists, its folder is not writable, the disk is full, ..."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ImageWriteError(WriteError):
    """An image output cannot be written (also: pixels or suffix unsuitable for the format)."""


class PairError(ContrafuseError):
    """The two images of a pair do not fit together (sizes differ, a partner is missing)."""


class WeightsError(ContrafuseError):
    """A weights file cannot be read or does not fit the model."""


class RegistrationError(ContrafuseError):
    """A pair could not be registered (too little shared structure, low confidence, a degenerate
    or implausible transform). Raised instead of returning a wrong warp; ``pair`` names the pair."""

    def __init__(self, pair: str, problem: str):
        self.pair = pair
        self.problem = problem
        super().__init__(f"{pair}: cannot register ({problem})")
