"""What a benchmark compares: datasets (lists of IR/VIS pairs) and methods (models or result folders).

Command-line spellings, parsed here so that the API and the CLI agree:

* dataset: ``NAME`` or ``NAME:SPLIT`` (a named dataset of :mod:`contrafuse.data`, e.g. ``tno42``,
  ``roadscene:test50``), or ``[LABEL=]IR_DIR,VIS_DIR`` (two folders paired by file stem).
* model: ``NAME`` or ``NAME=WEIGHTS`` (a registered model, optionally with a weights file);
  ``--weights NAME=PATH`` says the same thing separately.
* model options: ``--model-option NAME:KEY=VALUE`` (one model) or ``KEY=VALUE`` (every listed
  model that has the option), e.g. ``cs2fusion:border=zeros``.
* result folder: ``LABEL=DIR``; fused images named like the pairs (any image suffix). When
  ``DIR/<dataset>`` is a folder it is used for that dataset, so one folder can serve several.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..data import DataRootError, DatasetError, custom_pairs, dataset_info, dataset_pairs, folder_modalities, list_datasets
from ..errors import ContrafuseError
from ..io import IMAGE_SUFFIXES, PairFiles
from ..models import default_weights_path, list_models, model_info
from ..options import parse_model_options

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


class BenchError(ContrafuseError):
    """A benchmark argument (dataset, model, weights or result folder) cannot be used."""


@dataclass
class BenchDataset:
    """A labelled list of pairs, where they came from, and what the two images are (for the report)."""

    label: str
    pairs: list[PairFiles]  # names unique within the dataset
    source: str
    modalities: tuple[str, str] = ("IR", "VIS")  # titles of the ir and vis images, e.g. ("PET", "MRI")


@dataclass(frozen=True)
class Method:
    """A model to run (``kind="model"``) or a folder of published results (``kind="results"``)."""

    label: str
    kind: str  # "model" or "results"
    model: str | None = None
    weights: str | None = None  # "default", a path, or None (random initialisation)
    folder: Path | None = None
    model_options: tuple[tuple[str, Any], ...] = ()  # keyword options of the model's builder (--model-option)

    def describe(self) -> str:
        """One line for the report: the model and its weights, or the result folder."""
        if self.kind == "results":
            return f"results folder {self.folder}"
        weights = "shipped weights" if self.weights == "default" else (self.weights or "no weights")
        options = "".join(f", {key}={value}" for key, value in self.model_options)
        return f"model {self.model} ({weights}{options})"

    def results_folder(self, dataset: str) -> Path:
        """``DIR/<dataset>`` when that folder exists, else ``DIR``."""
        assert self.folder is not None
        nested = self.folder / dataset
        return nested if nested.is_dir() else self.folder

    def find_result(self, dataset: str, name: str) -> Path | None:
        """The fused image of pair ``name`` in this result folder, whatever its suffix."""
        folder = self.results_folder(dataset)
        for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return path
        return None


def _check_label(label: str, what: str) -> str:
    if not _LABEL.match(label):
        raise BenchError(f"{what} label {label!r}: use letters, digits and _.+- only (it names folders)")
    return label


def default_split(name: str) -> str:
    """The split benchmarked when none is named: ``test`` if the dataset has it, else the first ``test*``."""
    splits = list_datasets()[name]
    if "test" in splits:
        return "test"
    return next((s for s in splits if s.startswith("test")), splits[0])


def resolve_dataset(spec: str, root: str | os.PathLike | None = None, limit: int | None = None) -> BenchDataset:
    """A dataset from its command-line spelling (see module doc); ``limit`` keeps the first pairs."""
    if "," in spec:
        label, _, folders = spec.partition("=") if "=" in spec.split(",")[0] else ("", "", spec)
        ir_dir, _, vis_dir = folders.partition(",")
        ir_path, vis_path = Path(ir_dir), Path(vis_dir)
        for path in (ir_path, vis_path):
            if not path.is_dir():
                raise BenchError(f"--data {spec}: {path} is not a folder")
        label = label or ir_path.resolve().parent.name or "data"
        try:
            files = custom_pairs(ir_path, vis_path)
        except ContrafuseError as exc:
            raise BenchError(f"--data {spec}: {exc}") from None
        source = f"{ir_path} + {vis_path}"
        modalities = folder_modalities(ir_path, vis_path)
    else:
        name, _, split = spec.partition(":")
        if name not in list_datasets():
            raise BenchError(f"--data {spec}: unknown dataset {name!r}; named datasets: {', '.join(list_datasets())}, "
                             "or give IR_DIR,VIS_DIR")
        split = split or default_split(name)
        try:
            files = dataset_pairs(name, split, root)
        except DataRootError:
            raise  # its message names the data root flag, which the command line fills in
        except DatasetError as exc:
            raise BenchError(f"--data {spec}: {exc}") from None
        label = name if split in ("test", "all") else f"{name}_{split}"
        source = f"{name} (split {split})"
        modalities = dataset_info(name).modalities
    pairs = files[:limit]
    return BenchDataset(_check_label(label, "dataset"), pairs, source, modalities)


def _split_assignment(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise BenchError(f"{option} {text!r}: expected NAME=VALUE")
    return key.strip(), value.strip()


def parse_weights(entries: list[str] | None) -> dict[str, str]:
    """``["cs2fusion=w.safetensors", ...]`` -> ``{"cs2fusion": "w.safetensors"}``."""
    return dict(_split_assignment(entry, "--weights") for entry in entries or [])


def parse_models(entries: list[str] | None, weights: dict[str, str] | None = None) -> list[Method]:
    """Model methods from ``--models`` values (comma lists of ``NAME`` or ``NAME=WEIGHTS``).

    The weights of a model come from its ``=WEIGHTS``, else from ``weights[NAME]``, else
    ``"default"`` (shipped weights; models that need none ignore them). ``none`` means random
    initialisation. An exported ONNX file is ``FILE.onnx`` (labelled by its stem) or
    ``LABEL=FILE.onnx``, run by ONNX Runtime as ``contrafuse fuse`` runs it.
    """
    weights = dict(weights or {})
    methods: list[Method] = []
    for entry in ",".join(entries or []).split(","):
        entry = entry.strip()
        if not entry:
            continue
        if entry.lower().endswith(".onnx"):
            methods.append(onnx_method(entry))
            continue
        name, _, inline = entry.partition("=")
        if name not in list_models():
            raise BenchError(f"--models: unknown model {name!r}; registered: {', '.join(list_models())}")
        chosen = inline or weights.pop(name, "default")
        if chosen != "default" and chosen.lower() != "none" and not Path(chosen).is_file():
            raise BenchError(f"--models/--weights {name}: weights file {chosen} not found")
        if chosen == "default" and model_info(name).needs_weights and default_weights_path(name) is None:
            raise BenchError(f"--models {name}: no weights are shipped for it in this installation; "
                             f"pass --weights {name}=PATH (or {name}=none for random weights)")
        chosen = None if chosen.lower() == "none" or not model_info(name).needs_weights else chosen
        methods.append(Method(name, "model", model=name, weights=chosen))
    unused = [n for n in weights if n not in {m.model for m in methods}]
    if unused:
        raise BenchError(f"--weights given for {', '.join(unused)}, which --models does not list")
    return methods


def apply_model_options(methods: list[Method], entries: list[str] | None) -> list[Method]:
    """``methods`` with ``--model-option`` values applied: ``NAME:KEY=VALUE`` sets an option of
    the model method labelled NAME; ``KEY=VALUE`` sets it on every listed registered model whose
    builder has that option (an error when none has)."""
    chosen: dict[str, dict[str, Any]] = {}
    models = {m.label: m for m in methods if m.kind == "model" and m.model in list_models()}
    for entry in entries or []:
        target, sep, assignment = entry.partition(":") if ":" in entry.split("=", 1)[0] else ("", "", entry)
        (key, value), = parse_model_options([assignment]).items()
        if target:
            if target not in models:
                raise BenchError(f"--model-option {entry}: {target!r} is not a registered model listed in --models")
            labels = [target]
        else:
            labels = [label for label, m in models.items() if key in model_info(m.model).options()]
            if not labels:
                raise BenchError(f"--model-option {entry}: no model listed in --models has the option {key!r}")
        for label in labels:
            chosen.setdefault(label, {})[key] = value
    return [replace(m, model_options=tuple(sorted(chosen[m.label].items()))) if m.label in chosen else m
            for m in methods]


def onnx_method(entry: str) -> Method:
    """The method of a ``--models`` entry ``FILE.onnx`` or ``LABEL=FILE.onnx``."""
    label, _, path = entry.rpartition("=")
    label = label or _LABEL_UNSAFE.sub("_", Path(path).stem) or "onnx"
    if not Path(path).is_file():
        raise BenchError(f"--models {entry}: ONNX file {path} not found")
    return Method(_check_label(label, "--models"), "model", model=path, weights=None)


def parse_results(entries: list[str] | None) -> list[Method]:
    """Result-folder methods from ``--results LABEL=DIR`` values."""
    methods = []
    for entry in entries or []:
        label, folder = _split_assignment(entry, "--results")
        if not Path(folder).is_dir():
            raise BenchError(f"--results {entry}: {folder} is not a folder")
        methods.append(Method(_check_label(label, "--results"), "results", folder=Path(folder)))
    return methods


def check_unique(methods: list[Method]) -> list[Method]:
    """Methods with distinct labels, or an error naming the duplicate."""
    seen: set[str] = set()
    for method in methods:
        if method.label in seen:
            raise BenchError(f"two methods are labelled {method.label!r}; give result folders other labels")
        seen.add(method.label)
    if not methods:
        raise BenchError("nothing to compare: give --models and/or --results")
    return methods
