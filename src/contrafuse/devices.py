"""Choosing the torch device, the one way every entry point does it."""
from __future__ import annotations

import torch

from .errors import ContrafuseError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


class DeviceError(ContrafuseError):
    """A device was asked for that does not exist or is not available here."""


def resolve_device(preference: str | torch.device = "auto", *, local_rank: int = 0) -> torch.device:
    """The device to run on.

    ``"auto"``: CUDA when PyTorch sees it, else the CPU. ``"cuda"`` without an index means
    ``cuda:local_rank`` (the process's GPU under torchrun). A name PyTorch does not know, or a
    CUDA device that is not there, is a :class:`DeviceError` saying what is available.
    """
    text = str(preference).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise DeviceError(f"unknown device {str(preference)!r}; use {DEVICE_CHOICES}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(preference)!r}: PyTorch sees no CUDA device here; use cpu or auto")
        index = local_rank if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(preference)!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise DeviceError(f"device {str(preference)!r} is not supported; use {DEVICE_CHOICES}")
    return device


def describe_device(device: torch.device) -> str:
    """``"cuda (NVIDIA H100 80GB HBM3)"`` or ``"cpu (2 threads)"``: for logs and model cards."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
