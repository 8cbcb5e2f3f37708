"""Named fusion datasets: where they live, how their pairs are matched, and their splits.

A dataset is a pair of folders whose files are matched by stem; ``ir`` holds the infrared or
functional image (CT/PET/SPECT), ``vis`` the visible or MRI image. The data root is found in
this order: an explicit ``root``, ``$CONTRAFUSE_DATA``, ``../shared/data`` beside the
repository checkout, ``./shared/data`` relative to the working directory.

The field's public benchmarks (MSRS, LLVIP, M3FD, FMB) are read in the folder layout their
authors publish, as downloaded and unpacked under the data root (folder names matched without
regard to case); :data:`PUBLISHED_LAYOUTS` holds the trees and docs/training.md draws them.
A tree that does not match is a :class:`LayoutError` naming the folders expected and found.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from ..errors import ContrafuseError, PairError
from ..io import PairFiles, pair_folders
from ..registry import Registry

DATA_ENV = "CONTRAFUSE_DATA"
CHECKOUT = Path(__file__).resolve().parents[3]  # the repository, for its ../shared/data


class DatasetError(ContrafuseError):
    """A named dataset, split or manifest cannot be resolved."""


class DataRootError(DatasetError):
    """No data root was given and none of the default ones exists.

    ``flag`` names the command-line option that gives one (``--data-root`` in ``bench`` and
    ``export``, ``--data`` in ``train``); the command line sets it with :meth:`for_flag`.
    """

    def __init__(self, tried: list[Path], flag: str | None = None) -> None:
        self.tried, self.flag = tried, flag
        how = f"pass {flag} DIR" if flag else "give the data root (data_root= / root=)"
        super().__init__(f"no data root found (tried {', '.join(str(p) for p in tried)}); {how} or set {DATA_ENV}")

    def for_flag(self, flag: str) -> "DataRootError":
        """The same error, telling the user to pass ``flag``."""
        return DataRootError(self.tried, flag)


class LayoutError(DatasetError):
    """A dataset's folder tree does not match its published layout."""


def candidate_roots() -> list[Path]:
    """Default data roots, in the order they are tried (the environment variable first)."""
    roots = []
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    roots.append((CHECKOUT / ".." / "shared" / "data").resolve())
    roots.append((Path.cwd() / "shared" / "data").resolve())
    return list(dict.fromkeys(roots))  # the checkout's and the working directory's may be one folder


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
    raise DataRootError(candidate_roots())


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
    """``pairs`` without those named in ``names``."""
    drop = set(names)
    return [p for p in pairs if p.name not in drop]


def last_quarter_split(pairs: list[PairFiles], split: str) -> list[PairFiles]:
    """Medical split: ``test`` is the last quarter of the names in sorted order, ``train`` the rest."""
    ordered = sorted(pairs, key=lambda p: p.name)
    n_test = len(ordered) // 4
    cut = len(ordered) - n_test
    return {"train": ordered[:cut], "test": ordered[cut:], "all": ordered}[split]


# -- published layouts (MSRS, LLVIP, M3FD, FMB) ----------------------------------------------------

@dataclass(frozen=True)
class PublishedLayout:
    """Where a public dataset keeps its images, relative to its top folder.

    ``splits`` maps a split to its (infrared folder, visible folder), e.g. MSRS's ``test`` is
    ``("test/ir", "test/vi")``; ``extras`` are folders of the release that contrafuse does not
    read (labels, annotations), listed so the documented tree is complete.
    """

    folder: str
    splits: dict[str, tuple[str, str]]
    source: str
    extras: tuple[str, ...] = ()

    def tree(self) -> str:
        """The expected tree, one folder per line (docs and error messages)."""
        lines = [f"{self.folder}/"]
        for split, folders in self.splits.items():
            lines += [f"  {folder}/   ({split} split)" for folder in folders]
        lines += [f"  {extra}/   (not read)" for extra in self.extras]
        return "\n".join(lines)


PUBLISHED_LAYOUTS: dict[str, PublishedLayout] = {
    "msrs": PublishedLayout("MSRS", {"train": ("train/ir", "train/vi"), "test": ("test/ir", "test/vi")},
                            "github.com/Linfeng-Tang/MSRS", ("train/Segmentation_labels", "test/Segmentation_labels")),
    "llvip": PublishedLayout("LLVIP", {"train": ("infrared/train", "visible/train"), "test": ("infrared/test", "visible/test")},
                             "github.com/bupt-ai-cz/LLVIP, download_dataset.md", ("Annotations",)),
    "m3fd": PublishedLayout("M3FD", {"test": ("M3FD_Fusion/Ir", "M3FD_Fusion/Vis"),
                                     "detection": ("M3FD_Detection/Ir", "M3FD_Detection/Vis")},
                            "github.com/JinyuanLiu-CV/TarDAL: M3FD_Fusion.zip, M3FD_Detection.zip", ("M3FD_Detection/Annotation",)),
    "fmb": PublishedLayout("FMB", {"train": ("train/Infrared", "train/Visible"), "test": ("test/Infrared", "test/Visible")},
                           "github.com/JinyuanLiu-CV/SegMiF", ("train/Label", "test/Label")),
}


def _child(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it is a folder, else the one sub-folder whose name matches ignoring case."""
    exact = folder / name
    if exact.is_dir():
        return exact
    if not folder.is_dir():
        return None
    matches = [p for p in folder.iterdir() if p.is_dir() and p.name.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _subfolders(folder: Path) -> str:
    names = sorted(p.name + "/" for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return ", ".join(names[:8]) + (" ..." if len(names) > 8 else "") if names else "no folders"


def locate(base: Path, relative: str, name: str, layout: PublishedLayout) -> Path:
    """``base/relative`` matched part by part without regard to case, or a :class:`LayoutError`
    naming the expected tree, the first missing folder and what its parent holds."""
    here = base
    for part in Path(relative).parts:
        found = _child(here, part)
        if found is None:
            raise LayoutError(
                f"dataset {name!r}: {here / part} is missing ({here} holds: {_subfolders(here)}); "
                f"expected the published {layout.folder} layout ({layout.source}) under the data root:\n" + layout.tree()
            )
        here = found
    return here


def _published(name: str) -> Callable[[Path, str], list[PairFiles]]:
    layout = PUBLISHED_LAYOUTS[name]

    def pairs(root: Path, split: str) -> list[PairFiles]:
        top = locate(root, layout.folder, name, layout)
        ir_dir, vis_dir = (locate(top, folder, name, layout) for folder in layout.splits[split])
        return folder_pairs(ir_dir, vis_dir)

    return pairs


# -- this project's data folder (roadscene, tno42, tno25_cddfuse, harvard) -------------------------

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
    def pairs(root: Path, split: str) -> list[PairFiles]:
        found = folder_pairs(root / folder / "ir", root / folder / "vis")
        if split == "cddfuse25":  # CDDFuse's 25 TNO test pairs, under their tno42 names
            return select(found, packaged_manifest("tno42_cddfuse25.txt"), "tno42_cddfuse25.txt")
        return found

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


# -- the registry ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NamedDataset:
    """A named dataset: its splits, how its pairs are found, and what its two images are.

    ``modalities`` labels the ``ir`` and ``vis`` images (``("PET", "MRI")`` for MRI-PET) in
    reports and figures.
    """

    name: str
    splits: tuple[str, ...]
    build: Callable[[Path, str], list[PairFiles]]
    modalities: tuple[str, str] = ("IR", "VIS")


DATASETS: Registry[NamedDataset] = Registry("dataset", DatasetError)
for _entry in [
    NamedDataset("roadscene", ("train", "test50", "test40", "all"), _roadscene),
    NamedDataset("tno42", ("test", "cddfuse25", "all"), _tno("tno42")),
    NamedDataset("tno25_cddfuse", ("test", "all"), _tno("tno25_cddfuse")),
    *(NamedDataset(name, tuple(layout.splits), _published(name)) for name, layout in PUBLISHED_LAYOUTS.items()),
    *(NamedDataset(key, ("train", "test", "all"), _harvard_set(key), (functional.upper(), "MRI"))
      for key, (_, functional) in _HARVARD.items()),
    NamedDataset("harvard", ("train", "test", "all"), _harvard_all, ("CT/PET/SPECT", "MRI")),
]:
    DATASETS.add(_entry.name, _entry)


def list_datasets() -> dict[str, tuple[str, ...]]:
    """Named datasets and their splits."""
    return {name: entry.splits for name, entry in DATASETS.items()}


def dataset_info(name: str) -> NamedDataset:
    """The registry entry of a named dataset (splits, modality labels)."""
    return DATASETS.get(name)


def dataset_pairs(name: str, split: str, root: str | os.PathLike | None = None) -> list[PairFiles]:
    """The file pairs of split ``split`` of the named dataset ``name`` (sorted by name).

    Names are file stems; in the combined ``harvard`` set they carry their set
    (``MRI_PET/2004``) so that they stay unique.
    """
    entry = dataset_info(name)
    if split not in entry.splits:
        raise DatasetError(f"dataset {name!r} has no split {split!r}; splits: {', '.join(entry.splits)}")
    base = resolve_data_root(root)
    try:
        pairs = entry.build(base, split)
    except PairError as exc:
        raise DatasetError(f"dataset {name!r} under {base}: {exc}") from None
    return sorted(pairs, key=lambda p: p.name)


def custom_pairs(ir_dir: str | os.PathLike, vis_dir: str | os.PathLike, manifest: str | os.PathLike | None = None) -> list[PairFiles]:
    """Pairs of two arbitrary folders, optionally restricted to the names of a manifest file."""
    pairs = folder_pairs(ir_dir, vis_dir)
    if manifest is not None:
        pairs = select(pairs, read_manifest(manifest), str(manifest))
    return sorted(pairs, key=lambda p: p.name)


_MODALITY_NAMES = ("ct", "pet", "spect", "mri", "ir", "vis", "nir", "swir", "lwir", "rgb")


def folder_modalities(ir_dir: str | os.PathLike, vis_dir: str | os.PathLike) -> tuple[str, str]:
    """Labels for two arbitrary folders: the folder names when they name a modality
    (``PET``, ``MRI``, ...), else ``("IR", "VIS")``."""
    names = [Path(ir_dir).name.lower(), Path(vis_dir).name.lower()]
    if all(n in _MODALITY_NAMES for n in names):
        return names[0].upper(), names[1].upper()
    return "IR", "VIS"
