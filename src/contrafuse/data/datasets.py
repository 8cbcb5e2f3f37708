"""Named fusion datasets: where they live, how their pairs are matched, and their splits.

A dataset is a pair of folders whose files are matched by stem; ``ir`` holds the infrared or
functional image (CT/PET/SPECT), ``vis`` the visible or MRI image. The data root is found in
this order: an explicit ``root``, ``$CONTRAFUSE_DATA``, ``../shared/data`` beside the
repository checkout, ``./shared/data`` relative to the working directory.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Callable

from ..errors import ContrafuseError, PairError
from ..io import PairFiles, pair_folders

DATA_ENV = "CONTRAFUSE_DATA"


class DatasetError(ContrafuseError):
    """A named dataset, split or manifest cannot be resolved."""


def candidate_roots() -> list[Path]:
    """Default data roots, in the order they are tried (the environment variable first)."""
    roots = []
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    checkout = Path(__file__).resolve().parents[3]
    roots.append((checkout / ".." / "shared" / "data").resolve())
    roots.append(Path.cwd() / "shared" / "data")
    return roots


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else the first existing default (see module doc)."""
    if root is not None:
        path = Path(root)
        if not path.is_dir():
            raise DatasetError(f"{path}: data root not found")
        return path
    for path in candidate_roots():
        if path.is_dir():
            return path
    tried = ", ".join(str(p) for p in candidate_roots())
    raise DatasetError(f"no data root found (tried {tried}); pass --data DIR or set {DATA_ENV}")


def folder_pairs(ir_dir: str | os.PathLike, vis_dir: str | os.PathLike) -> list[PairFiles]:
    """All pairs of two folders matched by stem; a file without partner is an error naming it."""
    pairs, orphans = pair_folders(ir=ir_dir, vis=vis_dir)
    if orphans:
        shown = ", ".join(str(p) for p in orphans[:5]) + (" ..." if len(orphans) > 5 else "")
        raise PairError(f"{len(orphans)} file(s) without a partner of the same name in the other folder: {shown}")
    if not pairs:
        raise PairError(f"{ir_dir}, {vis_dir}: no image pairs found")
    return pairs


def read_manifest(path: str | os.PathLike) -> list[str]:
    """Names (stems) listed one per line; blank lines and ``#`` comments are skipped, suffixes dropped."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split manifest not found")
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(Path(line).stem if Path(line).suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff") else line)
    return names


def packaged_manifest(name: str) -> list[str]:
    """A split manifest shipped in ``contrafuse/data/splits``."""
    with resources.as_file(resources.files(__package__) / "splits" / name) as path:
        return read_manifest(path)


def select(pairs: list[PairFiles], names: list[str], source: str) -> list[PairFiles]:
    """The pairs named in ``names`` (in ``names`` order); a name without files is an error."""
    by_name = {p.name: p for p in pairs}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise DatasetError(f"{source}: {len(missing)} listed name(s) have no image pair: {', '.join(missing[:5])}")
    return [by_name[n] for n in names]


def exclude(pairs: list[PairFiles], names: list[str]) -> list[PairFiles]:
    drop = set(names)
    return [p for p in pairs if p.name not in drop]


def last_quarter_split(pairs: list[PairFiles], split: str) -> list[PairFiles]:
    """Medical split: ``test`` is the last quarter of the names in sorted order, ``train`` the rest."""
    ordered = sorted(pairs, key=lambda p: p.name)
    n_test = len(ordered) // 4
    cut = len(ordered) - n_test
    return {"train": ordered[:cut], "test": ordered[cut:], "all": ordered}[split]


# -- the named datasets ------------------------------------------------------------------------

def _roadscene(root: Path, split: str) -> list[PairFiles]:
    pairs = folder_pairs(root / "roadscene" / "ir", root / "roadscene" / "vis")
    test50 = read_manifest(root / "roadscene" / "cddfuse_test50.txt")
    test40 = packaged_manifest("roadscene_cs2fusion_test40.txt")
    if split == "train":
        return exclude(exclude(pairs, test50), test40)
    if split == "test50":
        return select(pairs, test50, "roadscene/cddfuse_test50.txt")
    if split == "test40":
        return select(pairs, test40, "roadscene_cs2fusion_test40.txt")
    return pairs


def _tno(folder: str) -> Callable[[Path, str], list[PairFiles]]:
    def pairs(root: Path, split: str) -> list[PairFiles]:  # noqa: ARG001  (test only: every split is all)
        return folder_pairs(root / folder / "ir", root / folder / "vis")

    return pairs


_HARVARD = {"harvard_mri_ct": ("MRI_CT", "ct"), "harvard_mri_pet": ("MRI_PET", "pet"), "harvard_mri_spect": ("MRI_SPECT", "spect")}


def _harvard_set(key: str) -> Callable[[Path, str], list[PairFiles]]:
    folder, functional = _HARVARD[key]

    def pairs(root: Path, split: str) -> list[PairFiles]:
        base = root / "harvard" / folder
        return last_quarter_split(folder_pairs(base / functional, base / "mri"), split)

    return pairs


def _harvard_all(root: Path, split: str) -> list[PairFiles]:
    """The three sets, each split on its own; names get their set as prefix (``MRI_PET/2004``)."""
    return [PairFiles(f"{_HARVARD[key][0]}/{p.name}", p.ir, p.vis) for key in _HARVARD for p in _harvard_set(key)(root, split)]


_DATASETS: dict[str, tuple[Callable[[Path, str], list[PairFiles]], tuple[str, ...]]] = {
    "roadscene": (_roadscene, ("train", "test50", "test40", "all")),
    "tno42": (_tno("tno42"), ("test", "all")),
    "tno25_cddfuse": (_tno("tno25_cddfuse"), ("test", "all")),
    **{key: (_harvard_set(key), ("train", "test", "all")) for key in _HARVARD},
    "harvard": (_harvard_all, ("train", "test", "all")),
}


def list_datasets() -> dict[str, tuple[str, ...]]:
    """Named datasets and their splits."""
    return {name: splits for name, (_, splits) in _DATASETS.items()}


def dataset_pairs(name: str, split: str, root: str | os.PathLike | None = None) -> list[PairFiles]:
    """The file pairs of split ``split`` of the named dataset ``name`` (sorted by name).

    Names are file stems; in the combined ``harvard`` set they carry their set
    (``MRI_PET/2004``) so that they stay unique.
    """
    if name not in _DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(_DATASETS)}")
    build, splits = _DATASETS[name]
    if split not in splits:
        raise DatasetError(f"dataset {name!r} has no split {split!r}; splits: {', '.join(splits)}")
    base = resolve_data_root(root)
    try:
        pairs = build(base, split)
    except PairError as exc:
        raise DatasetError(f"dataset {name!r} under {base}: {exc}") from None
    return sorted(pairs, key=lambda p: p.name)


def custom_pairs(ir_dir: str | os.PathLike, vis_dir: str | os.PathLike, manifest: str | os.PathLike | None = None) -> list[PairFiles]:
    """Pairs of two arbitrary folders, optionally restricted to the names of a manifest file."""
    pairs = folder_pairs(ir_dir, vis_dir)
    if manifest is not None:
        pairs = select(pairs, read_manifest(manifest), str(manifest))
    return sorted(pairs, key=lambda p: p.name)
