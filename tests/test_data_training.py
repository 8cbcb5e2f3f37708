"""contrafuse.data: pairing, splits, seeded patches, occlusion, and bad-data errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrafuse.data import (
    DATA_ENV, DatasetError, OcclusionPolicy, PatchPairs, dataset_pairs, folder_pairs, occlude, read_manifest, resolve_data_root,
)
from contrafuse.data.datasets import packaged_manifest
from contrafuse.errors import ImageReadError, PairError


def make_pairs(root: Path, count: int = 3, size: tuple[int, int] = (40, 30), seed: int = 0) -> Path:
    """ir/ gray PNGs and vis/ the same pixels stored as RGB (so vis luma == ir), names 000, 001, ..."""
    rng = np.random.default_rng(seed)
    (root / "ir").mkdir(parents=True, exist_ok=True)
    (root / "vis").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        gray = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
        Image.fromarray(gray).save(root / "ir" / f"{i:03d}.png")
        Image.fromarray(np.stack([gray] * 3, -1)).save(root / "vis" / f"{i:03d}.png")
    return root


def test_patches_are_aligned_seeded_and_in_unit_range(tmp_path):
    data = PatchPairs(folder_pairs(*(make_pairs(tmp_path) / s for s in ("ir", "vis"))), patch_size=16)
    item = data[(1, 42)]
    assert item["ir"].shape == (1, 16, 16) and item["ir"].dtype.is_floating_point
    assert 0.0 <= float(item["ir"].min()) and float(item["ir"].max()) <= 1.0
    # vis is the same gray image stored as RGB: luma equals the IR pixels, so crops/flips match
    assert np.allclose(item["ir"].numpy(), item["vis"].numpy(), atol=1e-6)
    again = data[(1, 42)]
    assert all(np.array_equal(item[k].numpy(), again[k].numpy()) for k in ("ir", "vis"))
    other = data[(1, 43)]
    assert not np.array_equal(item["ir"].numpy(), other["ir"].numpy())


def test_occlusion_policy_bounds_and_fill():
    patch = np.ones((32, 32), np.float32)
    policy = OcclusionPolicy(min_count=1, max_count=1, min_fraction=0.25, max_fraction=0.25)
    out = occlude(patch, np.random.default_rng(0), policy)
    assert (out == 0).sum() == 64 and patch.min() == 1.0  # one 8x8 black square, input untouched
    many = [occlude(patch, np.random.default_rng(s)) for s in range(20)]
    fractions = [(m == 0).mean() for m in many]
    assert min(fractions) >= (4 / 32) ** 2 - 1e-9 and max(fractions) <= 3 * (12 / 32) ** 2 + 1e-9


def test_missing_partner_is_named(tmp_path):
    make_pairs(tmp_path)
    (tmp_path / "vis" / "001.png").unlink()
    with pytest.raises(PairError, match="001.png"):
        folder_pairs(tmp_path / "ir", tmp_path / "vis")


def test_unreadable_image_is_named(tmp_path):
    make_pairs(tmp_path)
    (tmp_path / "vis" / "002.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="002.png"):
        PatchPairs(folder_pairs(tmp_path / "ir", tmp_path / "vis"), patch_size=16)


def test_image_smaller_than_patch_is_named(tmp_path):
    make_pairs(tmp_path, size=(40, 30))
    with pytest.raises(PairError, match=r"000\.png.*smaller than the 32x32"):
        PatchPairs(folder_pairs(tmp_path / "ir", tmp_path / "vis"), patch_size=32)


def test_size_mismatch_is_named(tmp_path):
    make_pairs(tmp_path)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "ir" / "001.png")
    with pytest.raises(PairError, match="001.png"):
        PatchPairs(folder_pairs(tmp_path / "ir", tmp_path / "vis"), patch_size=8)


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert resolve_data_root() == tmp_path
    with pytest.raises(DatasetError, match="data root not found"):
        resolve_data_root(tmp_path / "nope")


@pytest.mark.parametrize("command, flag", [
    (["export", "--model", "cs2fusion", "--precision", "int8", "--out", "m.onnx"], "--data-root"),
    (["bench", "--data", "tno42", "--models", "average", "--out", "bench"], "--data-root"),
    (["train", "cs2fusion", "--config", "cs2fusion_smoke", "--out", "run"], "--data"),
])
def test_a_missing_data_root_names_the_commands_flag_and_each_path_once(tmp_path, monkeypatch, capsys, command, flag):
    from contrafuse.cli.main import main
    from contrafuse.data import datasets

    monkeypatch.setattr(datasets, "CHECKOUT", tmp_path / "repo")  # its ../shared/data is ./shared/data here
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "shared" / "data"))
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"pass {flag} DIR or set {DATA_ENV}" in err, err
    assert err.count(str(tmp_path / "shared" / "data")) == 1, err
    assert not (tmp_path / "m.onnx").exists()


def test_manifest_reading(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a.png\n# comment\nb\n\n")
    assert read_manifest(path) == ["a", "b"]
    assert len(packaged_manifest("roadscene_cs2fusion_test40.txt")) == 40


def test_named_splits_on_shared_data(shared_dir):
    root = shared_dir / "data"
    train = {p.name for p in dataset_pairs("roadscene", "train", root)}
    test50 = {p.name for p in dataset_pairs("roadscene", "test50", root)}
    test40 = {p.name for p in dataset_pairs("roadscene", "test40", root)}
    everything = {p.name for p in dataset_pairs("roadscene", "all", root)}
    assert len(test50) == 50 and len(test40) == 40
    assert not train & (test50 | test40) and train | test50 | test40 == everything
    assert len(dataset_pairs("tno42", "test", root)) == 42
    for name in ("harvard_mri_ct", "harvard_mri_pet", "harvard_mri_spect"):
        all_names = [p.name for p in dataset_pairs(name, "all", root)]
        test = [p.name for p in dataset_pairs(name, "test", root)]
        assert test == sorted(all_names)[len(all_names) - len(all_names) // 4 :]
        assert len(dataset_pairs(name, "train", root)) + len(test) == len(all_names)
    pet = dataset_pairs("harvard_mri_pet", "train", root)[0]
    assert pet.ir.parent.name == "pet" and pet.vis.parent.name == "mri"
    with pytest.raises(DatasetError, match="no split"):
        dataset_pairs("tno42", "train", root)
