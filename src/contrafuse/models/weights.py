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


# Foreign pickles are read into memory: refuse any that declares more tensor data than this
# (our largest weights file is 37 MB; a torchvision vgg19 file with its classifier is 548 MB).
MAX_FOREIGN_TENSOR_BYTES = 768 * 2**20
MAX_PICKLE_BYTES = 64 * 2**20
MAX_MODULE_DEPTH = 64


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, backward_hooks: Any, *args: Any) -> torch.Tensor:
    return data


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _whole_numbers(values: Any) -> bool:
    return isinstance(values, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


class _TensorOnlyUnpickler(pickle.Unpickler):
    """Rebuilds tensors from a ``torch.save`` archive and nothing else, within a memory budget.

    Every storage is checked against what the pickle declares before a byte of it is
    decompressed, and read at most once; tensors are views of their storage, checked to lie
    inside it.
    """

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: Path, budget: int):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source, self.remaining = archive, prefix, source, budget
        self.storages: dict[str, torch.Tensor] = {}

    def refuse(self, problem: str) -> WeightsError:
        return WeightsError(f"{self.source}: refusing to load: {problem}")

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified in ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor"):
            return self.rebuild_tensor
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
        raise self.refuse(f"the pickle references {qualified}, which could run code (only tensors and module records are read)")

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *args: Any) -> torch.Tensor:
        if not isinstance(storage, torch.Tensor) or not _whole_numbers((offset,)) or not _whole_numbers(size) \
                or not _whole_numbers(stride) or len(size) != len(stride):
            raise self.refuse("a tensor record is malformed")
        if any(n == 0 for n in size):
            return storage.new_empty(size)
        extent = offset + sum((n - 1) * step for n, step in zip(size, stride)) + 1
        if extent > storage.numel():
            raise self.refuse(f"a tensor of size {size} and strides {stride} reaches past its storage of {storage.numel()} values")
        return storage.as_strided(size, stride, offset)

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and _whole_numbers((pid[4],))):
            raise self.refuse(f"unexpected persistent record {pid!r:.80}")
        dtype, key, count = pid[1].dtype, pid[2], pid[4]
        if key not in self.storages:
            self.storages[key] = self._read_storage(key, dtype, count)
        return self.storages[key]

    def _read_storage(self, key: str, dtype: torch.dtype, count: int) -> torch.Tensor:
        size = count * torch.empty(0, dtype=dtype).element_size()
        if size > self.remaining:
            raise self.refuse(f"it declares more than {MAX_FOREIGN_TENSOR_BYTES // 2**20} MiB of tensor data")
        self.remaining -= size
        try:
            entry = self.archive.getinfo(f"{self.prefix}/data/{key}")
        except KeyError:
            raise self.refuse(f"storage {key} is missing from the archive") from None
        if entry.file_size != size:
            raise self.refuse(f"storage {key} holds {entry.file_size} bytes, the pickle declares {size}")
        if size == 0:
            return torch.empty(0, dtype=dtype)
        buffer = bytearray(size)
        with self.archive.open(entry) as stream:
            if stream.readinto(buffer) != size or stream.read(1):
                raise self.refuse(f"storage {key} does not hold the {size} bytes its entry declares")
        return torch.frombuffer(buffer, dtype=dtype)


def read_reference_pickle(path: str | os.PathLike, budget: int = MAX_FOREIGN_TENSOR_BYTES) -> dict[str, torch.Tensor]:
    """State dict of a whole-module (or state-dict) ``torch.save`` zip file, read without running its code.

    Refuses, before decompressing them, archives that declare more than ``budget`` bytes of
    tensor data or a pickle above 64 MiB, and any record that does not describe a plain tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise WeightsError(f"{path}: not a torch.save archive (no single data.pkl)")
            entry = archive.getinfo(pickles[0])
            if entry.file_size > MAX_PICKLE_BYTES:
                raise WeightsError(f"{path}: refusing to load: its pickle is {entry.file_size} bytes")
            prefix = pickles[0][: -len("/data.pkl")]
            root = _TensorOnlyUnpickler(archive.read(entry), archive, prefix, path, budget).load()
            return _state_of(root, path)
    except WeightsError:
        raise
    except zipfile.BadZipFile:
        raise WeightsError(f"{path}: not a torch.save zip archive (legacy or corrupt file)") from None
    except RecursionError:
        raise WeightsError(f"{path}: refusing to load: the pickle is nested too deeply") from None
    except MemoryError:
        raise WeightsError(f"{path}: refusing to load: not enough memory to read it") from None
    except Exception as exc:  # noqa: BLE001  (a crafted pickle can raise anything the unpickler meets)
        raise WeightsError(f"{path}: corrupt or unsupported pickle ({type(exc).__name__}: {str(exc)[:200]})") from None


def _state_of(root: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(root, dict) and isinstance(root.get("state_dict"), dict):
        root = root["state_dict"]
    if isinstance(root, dict):
        return {k: v for k, v in root.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not isinstance(root, _ModuleRecord):
        raise WeightsError(f"{path}: holds neither a module nor a state dict")
    return _flatten_module_record(root, path)


def _flatten_module_record(record: _ModuleRecord, path: Path, prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    if depth > MAX_MODULE_DEPTH:
        raise WeightsError(f"{path}: refusing to load: modules nested more than {MAX_MODULE_DEPTH} deep")
    tensors: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, value in _mapping(record.state.get(group)).items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{name}"] = value
    for name, child in _mapping(record.state.get("_modules")).items():
        if isinstance(child, _ModuleRecord):
            tensors.update(_flatten_module_record(child, path, f"{prefix}{name}.", depth + 1))
    return tensors


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _check_values(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str | Path) -> None:
    """Floating-point tensors where the model has them, and every value finite."""
    for key, value in state.items():
        if expected[key].is_floating_point() and not value.is_floating_point():
            raise WeightsError(f"{source}: tensor {key} is {value.dtype}, expected floating point weights")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise WeightsError(f"{source}: tensor {key} holds NaN or infinite values")


class WeightsMismatchError(WeightsError):
    """A weights file whose tensors are not the model's (names or shapes)."""


SHOWN_NAMES = 3  # tensor names listed per kind of mismatch; the rest are counted


def _first_few(items: list[str]) -> str:
    """The first :data:`SHOWN_NAMES` items, comma-separated, and a count of the rest."""
    more = f", ... {len(items) - SHOWN_NAMES} more" if len(items) > SHOWN_NAMES else ""
    return ", ".join(items[:SHOWN_NAMES]) + more


def _names(keys: list[str]) -> str:
    return f"[{_first_few([repr(k) for k in keys])}]"


def _mismatch(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """What differs between two state dicts, a few names of each kind; empty when they fit."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    parts = []
    if missing:
        parts.append(f"missing {_names(missing)}")
    if unexpected:
        parts.append(f"unexpected {_names(unexpected)}")
    if misshaped:
        parts.append("wrong shape " + _first_few([f"{k} {tuple(state[k].shape)}!={tuple(expected[k].shape)}"
                                                  for k in misshaped]))
    return parts


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict`` with a short error (:class:`WeightsMismatchError`) naming a few of the
    missing, unexpected or misshaped tensors and counting the rest."""
    expected = model.state_dict()
    parts = _mismatch(expected, state)
    if parts:
        raise WeightsMismatchError(f"{source}: does not fit {type(model).__name__} ({len(expected)} tensors; the file "
                                   f"holds {len(state)}): " + "; ".join(parts))
    _check_values(state, expected, source)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def owning_models(state: dict[str, torch.Tensor], *, foreign: bool) -> list[str]:
    """The registered models whose tensors (names and shapes) ``state`` holds exactly; a foreign
    file (a pickle) may also fit through a model's own filter (an author's layout)."""
    from .registry import MODELS, build_model

    owners = []
    for name, info in MODELS.items():
        if not info.needs_weights:
            continue
        with torch.device("meta"):  # shapes only: nothing allocated, nothing initialised
            expected = build_model(name).state_dict()
        candidates = [state]
        if foreign and info.foreign_state_filter is not None:
            candidates.append(info.foreign_state_filter(state))
        if expected and any(not _mismatch(expected, candidate) for candidate in candidates):
            owners.append(name)
    return owners


def _load_checked(model: nn.Module, state: dict[str, torch.Tensor], source: Path, model_name: str | None, *,
                  raw: dict[str, torch.Tensor], foreign: bool) -> None:
    """Load ``state`` (the file's tensors ``raw``, filtered); when it does not fit ``model_name``,
    say which registered model the file belongs to, or that none shares a tensor with it."""
    try:
        load_state_dict_strict(model, state, source)
    except WeightsMismatchError:
        if not model_name:
            raise
        owners = [n for n in owning_models(raw, foreign=foreign) if n != model_name]
        if owners:
            which = " or ".join(repr(n) for n in owners)
            raise WeightsMismatchError(f"{source}: weights are for model {which}, not {model_name!r} (its tensor names "
                                       "and shapes match)") from None
        if not set(state) & set(model.state_dict()):
            raise WeightsMismatchError(f"{source}: not weights of {model_name!r} nor of any registered model: its "
                                       f"{len(raw)} tensors {_names(sorted(raw))} share no name with the "
                                       f"{len(model.state_dict())} of {model_name!r}") from None
        raise


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
        _load_checked(model, state, path, model_name, raw=state, foreign=False)
        return metadata
    raw = read_reference_pickle(path)
    state = foreign_state_filter(raw) if foreign_state_filter is not None else raw
    _load_checked(model, state, path, model_name, raw=raw, foreign=True)
    return {"model": model_name or "", "source": str(path.name)}


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str], *, overwrite: bool = False) -> Path:
    """Write ``model``'s state dict as safetensors with string metadata, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    entries = {"format_version": FORMAT_VERSION, **{k: str(v) for k, v in metadata.items()}}
    return write_with(path, lambda temp: save_file(state, str(temp), metadata=entries), overwrite=overwrite)
