"""torch.hub entry points: one per registered contrafuse model.

    >>> import torch
    >>> model = torch.hub.load("OWNER/contrafuse", "laplacian")          # or source="local"
    >>> fused = model(ir=ir, vis=vis)   # (B, 1, H, W) luma in [0, 1] -> fused (B, 1, H, W)

Entry point names are the registered model names with ``-`` written ``_``
(``coconet-medical`` -> ``coconet_medical``). Each takes ``weights="default"`` (the shipped
weights), a weights file, or None (random initialisation), ``device``, and the model's keyword
options.
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch", "numpy", "scipy", "kornia", "safetensors", "PIL"]

# torch.hub downloads the repository without installing it: import the package from src/.
# Module-level names without a leading underscore are entry points to torch.hub.list().
_SRC = str(_Path(__file__).resolve().parent / "src")
if _SRC not in _sys.path:
    _sys.path.insert(0, _SRC)

from contrafuse.models import create_model as _create_model  # noqa: E402
from contrafuse.models import list_models as _list_models  # noqa: E402
from contrafuse.models import model_info as _model_info  # noqa: E402


def _identifier(name: str) -> str:
    """A registered model name as a Python identifier (``coconet-medical`` -> ``coconet_medical``)."""
    return name.replace("-", "_").replace(".", "_")


def _entry_point(name: str):
    def load(weights="default", device="cpu", **options):
        return _create_model(name, weights=weights, device=device, **options)

    info = _model_info(name)
    load.__name__ = load.__qualname__ = _identifier(name)
    load.__doc__ = (
        f"{info.description} (registered as {name!r}, task {info.task}).\n\n"
        "Args:\n"
        "    weights: \"default\" for the shipped weights, a .safetensors/.pth path, or None.\n"
        "    device: torch device.\n\n"
        "Returns an nn.Module in eval mode: forward(*, ir, vis) on (B, 1, H, W) luma in [0, 1]."
    )
    return load


for _name in _list_models():
    globals()[_identifier(_name)] = _entry_point(_name)
