"""Warnings for likely mistakes: a model given the other task's images, and swapped inputs.

Each warning fires on real inputs that are wrong, once per run, and stays quiet on correct ones.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

import contrafuse
from contrafuse.cli.main import main
from contrafuse.input_checks import InputWarning, frame_black_fraction, looks_like_scans
from contrafuse.io import read_image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
IR, VIS = EXAMPLES / "ir.png", EXAMPLES / "vis.png"  # an infrared-visible pair: gray infrared, colour visible


@pytest.fixture(scope="module")
def pet_pair(shared_dir) -> tuple[Path, Path]:
    """A Harvard PET (pseudo-colour) + MRI (gray) pair."""
    folder = shared_dir / "data/harvard/MRI_PET"
    name = sorted(p.name for p in (folder / "pet").iterdir())[0]
    return folder / "pet" / name, folder / "mri" / name


def input_warnings(**fuse_args) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        contrafuse.fuse(device="cpu", **fuse_args)
    return [str(w.message) for w in caught if issubclass(w.category, InputWarning)]


def test_scans_and_photographs_are_told_apart_on_real_images(shared_dir, pet_pair):
    assert looks_like_scans(ir=read_image(pet_pair[0]), vis=read_image(pet_pair[1]))
    for kind in ("ir", "vis"):
        tno = read_image(shared_dir / f"data/tno42/{kind}/01.png")
        assert frame_black_fraction(tno) < 0.5
    assert not looks_like_scans(ir=read_image(IR), vis=read_image(VIS))


def test_a_medical_model_on_an_infrared_visible_pair_is_warned_once_per_run(tmp_path, capsys):
    for folder in ("ir", "vis"):
        (tmp_path / folder).mkdir()
    for stem in ("a", "b"):
        shutil.copy(IR, tmp_path / "ir" / f"{stem}.png")
        shutil.copy(VIS, tmp_path / "vis" / f"{stem}.png")
    assert main(["fuse", "--model", "coconet-medical", "--ir", str(tmp_path / "ir"), "--vis", str(tmp_path / "vis"),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("contrafuse: warning:")]  # not after a progress bar
    assert len(lines) == 1 and "coconet-medical is a medical model" in lines[0] and "cs2fusion" in lines[0]
    assert len(list((tmp_path / "out").iterdir())) == 2  # fused anyway


def test_an_infrared_visible_model_on_scans_is_warned(pet_pair):
    messages = input_warnings(ir=pet_pair[0], vis=pet_pair[1], model="cs2fusion")
    assert len(messages) == 1 and "looks like a pair of medical scans" in messages[0] and "coconet-medical" in messages[0]


def test_correct_inputs_stay_quiet(pet_pair):
    assert input_warnings(ir=IR, vis=VIS, model="cs2fusion") == []
    assert input_warnings(ir=pet_pair[0], vis=pet_pair[1], model="coconet-medical") == []
    assert input_warnings(ir=IR, vis=VIS, model="average") == []


def test_swapped_inputs_are_warned_for_both_tasks(pet_pair, tmp_path, capsys):
    messages = input_warnings(ir=VIS, vis=IR, model="average")
    assert len(messages) == 1 and "infrared input" in messages[0] and "swapped" in messages[0]
    messages = input_warnings(ir=pet_pair[1], vis=pet_pair[0], model="coconet-medical")  # MRI as ir, PET as vis
    assert len(messages) == 1 and "pseudo-colour PET/SPECT image as --ir" in messages[0]
    assert main(["fuse", "--model", "average", "--ir", str(VIS), "--vis", str(IR), "--out", str(tmp_path / "f.png")]) == 0
    assert f"contrafuse: warning: the infrared input {VIS} is colour" in capsys.readouterr().err
