"""The field's public datasets in their published layouts (tiny trees built here), and layout errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrafuse.cli.main import main
from contrafuse.data import PUBLISHED_LAYOUTS, LayoutError, dataset_info, dataset_pairs, folder_modalities
from contrafuse.io import read_image

# name -> (top folder, {split: (ir folder, vis folder, names)}, suffix, extra folders of the release)
TREES = {
    "msrs": ("MSRS", {"train": ("train/ir", "train/vi", ["00001D", "00003N"]),
                      "test": ("test/ir", "test/vi", ["00004N", "00055D"])}, ".png", ["train/Segmentation_labels"]),
    "llvip": ("LLVIP", {"train": ("infrared/train", "visible/train", ["010001", "010002"]),
                        "test": ("infrared/test", "visible/test", ["190001", "190002"])}, ".jpg", ["Annotations"]),
    "m3fd": ("M3FD", {"test": ("M3FD_Fusion/Ir", "M3FD_Fusion/Vis", ["00000", "00001"]),
                      "detection": ("M3FD_Detection/Ir", "M3FD_Detection/Vis", ["00010", "00011", "00012"])}, ".png",
             ["M3FD_Detection/Annotation"]),
    "fmb": ("FMB", {"train": ("train/Infrared", "train/Visible", ["00001", "00002"]),
                    "test": ("test/Infrared", "test/Visible", ["00043", "00044"])}, ".png", ["test/Label"]),
}


def build_tree(root: Path, name: str, size: tuple[int, int] = (48, 64)) -> Path:
    """The published tree of ``name`` under ``root``, with a few small pairs per split."""
    top, splits, suffix, extras = TREES[name]
    rng = np.random.default_rng(len(name))
    for ir_dir, vis_dir, names in splits.values():
        for folder in (ir_dir, vis_dir):
            (root / top / folder).mkdir(parents=True, exist_ok=True)
        for stem in names:
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(root / top / ir_dir / f"{stem}{suffix}")
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / top / vis_dir / f"{stem}{suffix}")
    for extra in extras:
        (root / top / extra).mkdir(parents=True, exist_ok=True)
    return root


def test_the_trees_here_are_the_documented_layouts():
    for name, (top, splits, _, _) in TREES.items():
        layout = PUBLISHED_LAYOUTS[name]
        assert layout.folder == top
        assert {s: f[:2] for s, f in splits.items()} == layout.splits
        assert dataset_info(name).splits == tuple(layout.splits)


@pytest.mark.parametrize("name", sorted(TREES))
def test_published_layout_is_read_split_by_split(tmp_path, name):
    root = build_tree(tmp_path, name)
    top, splits, _, _ = TREES[name]
    for split, (ir_dir, vis_dir, names) in splits.items():
        pairs = dataset_pairs(name, split, root)
        assert [p.name for p in pairs] == names
        assert all(p.ir.parent == root / top / ir_dir and p.vis.parent == root / top / vis_dir for p in pairs)
        assert read_image(pairs[0].ir).ndim == 2 and read_image(pairs[0].vis).ndim == 3


@pytest.mark.parametrize("name", sorted(TREES))
def test_bench_runs_on_each_published_layout(tmp_path, name, capsys):
    root = build_tree(tmp_path / "data", name)
    split = "test"
    out = tmp_path / "out"
    code = main(["bench", "--data", f"{name}:{split}", "--data-root", str(root), "--models", "average",
                 "--metrics", "EN", "SD", "--out", str(out), "--no-plots", "--grid", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    names = TREES[name][1][split][2]
    assert sorted(p.stem for p in (out / "fused" / name / "average").glob("*.png")) == names
    assert f"## {name}" in (out / "report.md").read_text()


def test_folder_names_match_without_regard_to_case(tmp_path):
    build_tree(tmp_path, "msrs")
    (tmp_path / "MSRS").rename(tmp_path / "msrs")
    (tmp_path / "msrs" / "test" / "vi").rename(tmp_path / "msrs" / "test" / "VI")
    assert [p.name for p in dataset_pairs("msrs", "test", tmp_path)] == ["00004N", "00055D"]


def test_wrong_layout_names_the_expected_and_found_folders(tmp_path, capsys):
    build_tree(tmp_path / "data", "msrs")
    (tmp_path / "data" / "MSRS" / "test" / "vi").rename(tmp_path / "data" / "MSRS" / "test" / "visible")
    with pytest.raises(LayoutError) as caught:
        dataset_pairs("msrs", "test", tmp_path / "data")
    message = str(caught.value)
    assert "MSRS/test/vi is missing" in message and "holds: ir/, visible/" in message
    assert "test/ir/   (test split)" in message and "test/vi/   (test split)" in message
    out = tmp_path / "out"
    code = main(["bench", "--data", "msrs:test", "--data-root", str(tmp_path / "data"), "--models", "average",
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "MSRS/test/vi is missing" in err and "Traceback" not in err
    assert not out.exists()


def test_missing_dataset_folder_names_what_the_root_holds(tmp_path):
    (tmp_path / "tno42").mkdir()
    with pytest.raises(LayoutError, match=r"(?s)LLVIP is missing \(.* holds: tno42/\).*infrared/test/"):
        dataset_pairs("llvip", "test", tmp_path)
    build_tree(tmp_path, "m3fd")
    shutil.rmtree(tmp_path / "M3FD" / "M3FD_Detection")
    assert len(dataset_pairs("m3fd", "test", tmp_path)) == 2  # the fusion benchmark alone is enough for its split
    with pytest.raises(LayoutError, match=r"M3FD_Detection is missing \(.* holds: M3FD_Fusion/\)"):
        dataset_pairs("m3fd", "detection", tmp_path)


def test_modality_labels():
    assert dataset_info("harvard_mri_pet").modalities == ("PET", "MRI")
    assert dataset_info("harvard_mri_ct").modalities == ("CT", "MRI")
    assert dataset_info("harvard_mri_spect").modalities == ("SPECT", "MRI")
    assert dataset_info("msrs").modalities == ("IR", "VIS")
    assert folder_modalities("data/PET", "data/MRI") == ("PET", "MRI")
    assert folder_modalities("data/ir", "data/vi") == ("IR", "VIS")


def test_tno42_cddfuse25_split_is_the_cddfuse_subset(shared_dir):
    root = shared_dir / "data"
    ours, theirs = dataset_pairs("tno42", "cddfuse25", root), dataset_pairs("tno25_cddfuse", "test", root)
    assert len(ours) == len(theirs) == 25
    mapping = dict(line.split() for line in (root / "tno25_cddfuse" / "name_map_to_tno42.txt").read_text().splitlines())
    assert [mapping[f"{p.name}.png"] for p in theirs] == [f"{p.name}.png" for p in ours]
    for a, b in zip(ours[::6], theirs[::6]):
        assert np.array_equal(read_image(a.ir), read_image(b.ir)) and np.array_equal(read_image(a.vis), read_image(b.vis))
