"""Loading and saving weights: our safetensors files, and the authors' pickles read safely.

The published CS2Fusion weights are whole pickled modules (``torch.save(model)``). Unpickling
them the ordinary way runs arbitrary code and needs the authors' sources. :func:`read_reference_pickle`
instead walks the pickle with an unpickler that only rebuilds tensors: module classes become
inert records, and any other global (``os.system``, ``builtins.eval``, ...) is refused.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..atomic import write_with
from ..errors import WeightsError

FORMAT_VERSION = "1"

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# Modules whose classes we accept as inert records (never imported, never instantiated):
# torch's layers and the authors' own ``net`` module.
_INERT_MODULES = ("net", "__main__")
_INERT_MODULE_PREFIX = "torch.nn.modules."


class _ModuleRecord:
    """Stands in for any pickled nn.Module: keeps its state, runs none of its code."""

    def __init__(self, qualified_name: str):
        self.qualified_name = qualified_name
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


def _record_class(qualified_name: str) -> type:
    class Record(_ModuleRecord):
        def __new__(cls, *args: Any, **kwargs: Any) -> "_ModuleRecord":  # noqa: ARG003
            instance = object.__new__(cls)
            _ModuleRecord.__init__(instance, qualified_name)
            return instance

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

    Record.__name__ = qualified_name
    return Record


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *args: Any) -> torch.Tensor:
    return storage.as_strided(size, stride, offset).clone()


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, backward_hooks: Any, *args: Any) -> torch.Tensor:
    return data


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _TensorOnlyUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: Path):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source = archive, prefix, source

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified in ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor"):
            return _rebuild_tensor
        if qualified in ("torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if qualified == "collections.OrderedDict":
            return OrderedDict
        if qualified in ("__builtin__.set", "builtins.set"):
            return set
        if module in _INERT_MODULES or module.startswith(_INERT_MODULE_PREFIX):
            return _record_class(qualified)
        raise WeightsError(
            f"{self.source}: refusing to load: the pickle references {qualified}, which could run code "
            "(only tensors and module records are read)"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise WeightsError(f"{self.source}: unexpected persistent record {pid!r:.80}")
        dtype, key = pid[1].dtype, pid[2]
        raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        return torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)


def read_reference_pickle(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict of a whole-module ``torch.save`` zip file, read without running its code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise WeightsError(f"{path}: not a torch.save archive (no single data.pkl)")
            prefix = pickles[0][: -len("/data.pkl")]
            root = _TensorOnlyUnpickler(archive.read(pickles[0]), archive, prefix, path).load()
    except zipfile.BadZipFile:
        raise WeightsError(f"{path}: not a torch.save zip archive (legacy or corrupt file)") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
        raise WeightsError(f"{path}: corrupt pickle ({exc})") from None
    if isinstance(root, dict):
        return {k: v for k, v in root.items() if isinstance(v, torch.Tensor)}
    if not isinstance(root, _ModuleRecord):
        raise WeightsError(f"{path}: holds neither a module nor a state dict")
    return _flatten_module_record(root)


def _flatten_module_record(record: _ModuleRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (record.state.get(group) or {}).items():
            if isinstance(value, torch.Tensor):
                tensors[prefix + name] = value
    for name, child in (record.state.get("_modules") or {}).items():
        if isinstance(child, _ModuleRecord):
            tensors.update(_flatten_module_record(child, f"{prefix}{name}."))
    return tensors


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict`` with an error that lists every missing, unexpected or misshaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        if misshaped:
            parts.append("wrong shape " + ", ".join(f"{k} {tuple(state[k].shape)}!={tuple(expected[k].shape)}" for k in misshaped))
        raise WeightsError(f"{source}: does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            return {k: handle.get_tensor(k) for k in handle.keys()}, metadata
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None


def load_weights(
    model: nn.Module,
    path: str | os.PathLike,
    model_name: str | None = None,
    foreign_state_filter: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> dict[str, str]:
    """Load a safetensors file or an author's pickle into ``model``; returns the metadata.

    ``foreign_state_filter`` maps a pickle's state dict onto the model's keys (the model's
    registry entry provides it); safetensors files are ours and load as they are.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        state, metadata = read_safetensors(path)
        stored = metadata.get("model")
        if model_name and stored and stored != model_name:
            raise WeightsError(f"{path}: weights are for model {stored!r}, not {model_name!r}")
        load_state_dict_strict(model, state, path)
        return metadata
    state = read_reference_pickle(path)
    if foreign_state_filter is not None:
        state = foreign_state_filter(state)
    load_state_dict_strict(model, state, path)
    return {"model": model_name or "", "source": str(path.name)}


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str], *, overwrite: bool = False) -> Path:
    """Write ``model``'s state dict as safetensors with string metadata, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    entries = {"format_version": FORMAT_VERSION, **{k: str(v) for k, v in metadata.items()}}
    return write_with(path, lambda temp: save_file(state, str(temp), metadata=entries), overwrite=overwrite)
