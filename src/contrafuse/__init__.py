"""contrafuse: multi-modality image fusion (infrared-visible and medical).

    >>> import contrafuse
    >>> fused = contrafuse.fuse(ir="ir.png", vis="vis.png", model="cs2fusion")

Attributes are imported on first use, so ``import contrafuse.metrics`` does not load torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "fuse": "fusion",
    "Fuser": "session",
    "fuse_folders": "fusion",
    "FuseOptions": "options",
    "Color": "options",
    "Rounding": "options",
    "fuse_video": "video",
    "read_image": "io",
    "write_image": "io",
    "DEFAULT_MODEL": "models",
    "create_model": "models",
    "list_models": "models",
    "Registration": "registration",
    "align_pair": "registration",
    "align_folders": "registration",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'contrafuse' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
