"""The default backend: registered models run by ONNX Runtime through a cached export.

On a CPU, ONNX Runtime runs CS2Fusion and CoCoNet faster than their PyTorch paths
(``benchmarks/inference.py``), so ``backend="auto"`` (the default of ``contrafuse fuse``, the
Python API and the demo page) runs a registered model whose capabilities declare
``onnx_by_default`` through its ONNX export, made once and kept in the user's cache folder:

* ``$CONTRAFUSE_CACHE``, else ``$XDG_CACHE_HOME/contrafuse``, else ``~/.cache/contrafuse``;
  files ``onnx/<model>-<key>.onnx``, written atomically (two processes exporting at once both
  write the same bytes; the last rename wins).
* The key hashes everything the graph depends on: the model name and builder options, the
  weights (the loaded tensors, so a retrained file never reuses an old graph), the model's
  source file, the opset and the versions of contrafuse, PyTorch, onnx and onnxruntime.
* Every export is checked against PyTorch on odd sizes before it is kept
  (:func:`contrafuse.export.export_onnx` with ``verify``); outputs are within 1 grey level of
  the PyTorch path.

``auto`` falls back to PyTorch, and the run's summary says why, when the export cannot apply:
onnxruntime or onnx not installed, a CUDA device, a precision other than fp32, ``compile``,
random weights, a module or a model without ``onnx_by_default``, a cache folder that cannot be
written. Images larger than :data:`ONNX_MAX_PIXELS` go to PyTorch's memory-bounded path in any
case (ONNX Runtime holds every activation of the whole image: about 5.6 GB at 1920x1080).
``backend="torch"`` always runs PyTorch; ``backend="onnxruntime"`` insists on the export.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import WriteError


CACHE_ENV = "CONTRAFUSE_CACHE"
ONNX_MAX_PIXELS = 1280 * 1024


def cache_folder() -> Path:
    """Where cached exports live (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "contrafuse"


def _version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return "missing"


def weights_digest(network: nn.Module) -> str:
    """SHA-256 of a module's tensors (names, dtypes, shapes and values), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def export_key(name: str, network: nn.Module, model_options: Mapping[str, Any] | None = None) -> str:
    """The cache key of ``network``'s export: 16 hex digits over what its graph depends on."""
    from . import __version__
    from .export import ONNX_OPSET

    source = inspect.getsourcefile(type(network))
    parts = {
        "model": name, "options": {k: str(v) for k, v in sorted(dict(model_options or {}).items())},
        "weights": weights_digest(network),
        "source": hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else "",
        "opset": ONNX_OPSET, "contrafuse": __version__, "torch": torch.__version__,
        "onnx": _version("onnx"), "onnxruntime": _version("onnxruntime"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def cached_export(name: str, network: nn.Module, model_options: Mapping[str, Any] | None = None) -> Path:
    """The ONNX file of a built registered model, exported into the cache the first time.

    Raises :class:`~contrafuse.export.ExportError` when the graph does not reproduce PyTorch and
    :class:`~contrafuse.errors.WriteError` when the cache folder cannot be written.
    """
    from .export import export_onnx

    path = cache_folder() / "onnx" / f"{name}-{export_key(name, network, model_options)}.onnx"
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(path.parent, f"cannot create the cache folder ({exc.strerror}); set {CACHE_ENV} "
                             "to a writable folder") from None
        export_onnx(network, path, overwrite=True)
    return path


def onnx_unavailable() -> str | None:
    """Why ONNX Runtime cannot run exports here (a missing package), or None."""
    for module in ("onnxruntime", "onnx"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'contrafuse[onnx]')"
    return None


def runs_faster_exported(model: Any, network: nn.Module) -> bool:
    """True for a registered model (a name) whose capabilities declare ``onnx_by_default``."""
    from .models.registry import capabilities_of

    return isinstance(model, str) and capabilities_of(network).onnx_by_default


NO_EXPORT = ("it has no cached ONNX export (only models that run faster exported do); export it with "
             "`contrafuse export` and pass --model FILE.onnx")


def why_not_onnx(model: Any, network: nn.Module, *, weights: Any, device: torch.device,
                 precision: str | None, compile: bool) -> str | None:
    """Why a registered model must run on PyTorch here (None: the cached export applies);
    :data:`NO_EXPORT` for a model that is never run exported by default."""
    if not runs_faster_exported(model, network):
        return NO_EXPORT
    if weights is None:
        return "random weights (nothing worth caching)"
    if device.type != "cpu":
        return f"device {device.type} (the cached export is for CPUs)"
    if precision not in (None, "fp32"):
        return f"precision {precision}"
    if compile:
        return "compile asks for torch.compile"
    return onnx_unavailable()
