"""One registry mechanism for everything contrafuse looks up by name: models, training recipes,
metrics and datasets.

A :class:`Registry` maps names to entries (dataclasses that carry what each thing needs and can
do, as timm's registry entries do). Built-in entries are registered by importing their modules,
which a registry does on first use (``builtins``); anything else registers itself the same way,
so a new method is its own file plus one registration::

    MODELS = Registry("model", UnknownModelError, builtins=("contrafuse.models.classical", ...))
    MODELS.add("average", ModelInfo(...))
    MODELS.get("average"), MODELS.names("coco*"), MODELS.remove("average")
"""
from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

from .errors import ContrafuseError

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """Named entries of one kind, in registration order.

    Args:
        kind: what the entries are, for messages (``"model"``, ``"dataset"``, ...).
        error: the :class:`~contrafuse.errors.ContrafuseError` subclass raised for an unknown name.
        builtins: modules whose import registers the built-in entries (imported on first use).
    """

    def __init__(self, kind: str, error: type[ContrafuseError] = ContrafuseError,
                 builtins: tuple[str, ...] = ()) -> None:
        self.kind, self.error, self.builtins = kind, error, builtins
        self._entries: dict[str, Entry] = {}
        self._loaded = not builtins

    def add(self, name: str, entry: Entry, *, replace: bool = False) -> Entry:
        """Register ``entry`` as ``name``; a second entry under one name is an error unless ``replace``."""
        if not name:
            raise ValueError(f"a {self.kind} needs a non-empty name")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> Entry:
        """Take ``name`` out of the registry (e.g. a method a test registered); returns its entry."""
        self._load_builtins()
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; nothing to remove")
        return self._entries.pop(name)

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: the modules register into this registry
        for module in self.builtins:
            importlib.import_module(module)

    def get(self, name: str) -> Entry:
        """The entry registered as ``name``; the registry's error, listing the known names, otherwise."""
        self._load_builtins()
        if name not in self._entries:
            known = ", ".join(self._entries) or "none"
            raise self.error(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names in registration order; ``pattern`` is a shell wildcard."""
        self._load_builtins()
        return [n for n in self._entries if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, Entry]]:
        self._load_builtins()
        return list(self._entries.items())
