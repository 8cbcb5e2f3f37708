"""Report grids: insets on the infrared target or where the user puts them, modality titles,
mixed aspect ratios without gaps, and a bench without matplotlib."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrafuse.bench.grid import InsetError, ZoomBox, choose_zoom, inset_corner, parse_insets, with_inset
from contrafuse.cli.main import main


def foliage_and_warm_person(height: int = 150, width: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """IR with a small warm figure on the right; both images full of leafy noise on the left."""
    rng = np.random.default_rng(3)
    ir = np.full((height, width), 70.0)
    vis = np.full((height, width, 3), 110.0)
    leaves = rng.normal(0, 45, (height, width // 2))
    ir[:, : width // 2] += 0.5 * leaves
    vis[:, : width // 2] += leaves[..., None]
    ir[90:120, 150:160] = 215  # the person: 10 x 30 px, much warmer than the scene
    return np.clip(ir, 0, 255).astype(np.uint8), np.clip(vis, 0, 255).astype(np.uint8)


def contains(box: ZoomBox, row: int, col: int) -> bool:
    return box.top <= row < box.top + box.height and box.left <= col < box.left + box.width


def test_target_inset_follows_the_warm_person_not_the_foliage():
    ir, vis = foliage_and_warm_person()
    target = choose_zoom(ir, vis, "target")
    assert contains(target, 105, 155) and target.height == target.width == 33
    assert abs((target.top + target.height / 2) - 105) <= 2 and abs((target.left + target.width / 2) - 155) <= 2  # centred
    assert not contains(choose_zoom(ir, vis, "detail"), 105, 155)  # gradient energy picks the leaves
    flat = np.full_like(ir, 90)  # no infrared target: the detail choice
    assert choose_zoom(flat, vis, "target") == choose_zoom(flat, vis, "detail")


def test_user_boxes_in_pixels_fractions_and_per_pair():
    ir, vis = foliage_and_warm_person()
    choice = parse_insets(["10,20,40,30", "p2=0.5,0.5,0.25,0.2", "detail"])
    assert choice.box_for("p1", ir, vis) == ZoomBox(top=20, left=10, height=30, width=40)
    assert choice.box_for("p2", ir, vis) == ZoomBox(top=75, left=100, height=30, width=50)
    assert parse_insets(["190,140,40,40"]).box_for("p", ir, vis) == ZoomBox(140, 190, 10, 10)  # clipped to the image
    assert parse_insets(["detail"]).mode == "detail" and parse_insets(None).mode == "target"
    for bad, message in [("1,2,3", "expected x,y,w,h"), ("0,0,0,5", "must be > 0"), ("0.5,0.5,1.5,0.2", r"\[0, 1\]"),
                         ("spiral", "expected x,y,w,h")]:
        with pytest.raises(InsetError, match=message):
            parse_insets([bad])
    with pytest.raises(InsetError, match=r"outside pair p \(200x150\)"):
        parse_insets(["300,10,20,20"]).box_for("p", ir, vis)


def test_inset_is_drawn_in_a_corner_that_leaves_the_box_visible():
    image = np.zeros((100, 160), np.uint8)
    image[80:95, 140:155] = 255  # something bright inside the box, bottom right
    box = ZoomBox(80, 140, 15, 15)
    panel = with_inset(image, box)
    top, left = inset_corner(box, (42, 42), 100, 160)
    assert (top, left) == (58, 0)  # bottom left: bottom right would cover the box
    assert panel[85, 145].tolist() == [255, 255, 255]  # the box itself is still shown
    assert panel[60:99, 2:40].max() == 255  # the magnified bright square is in the inset


def _pairs(root: Path, sizes, ir_name="ir", vis_name="vis") -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    ir_dir, vis_dir = root / ir_name, root / vis_name
    ir_dir.mkdir(parents=True)
    vis_dir.mkdir(parents=True)
    for i, (height, width) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(ir_dir / f"{i:02d}.png")
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(vis_dir / f"{i:02d}.png")
    return ir_dir, vis_dir


def test_medical_grid_columns_are_named_for_the_modalities(tmp_path: Path):
    base = tmp_path / "data" / "harvard" / "MRI_PET"
    _pairs(base, [(48, 48)] * 4, "pet", "mri")
    out = tmp_path / "out"
    assert main(["bench", "--data", "harvard_mri_pet:test", "--data-root", str(tmp_path / "data"), "--models", "average",
                 "--metrics", "EN", "--out", str(out), "--no-plots", "--quiet"]) == 0
    page = (out / "report.html").read_text()
    assert 'data-column="PET"' in page and 'data-column="MRI"' in page and 'data-column="IR"' not in page
    assert json.loads((out / "metrics.json").read_text())["datasets"]["harvard_mri_pet"]["modalities"] == {"ir": "PET", "vis": "MRI"}


def test_mixed_aspect_grid_figure_has_no_large_gaps(tmp_path: Path):
    pytest.importorskip("matplotlib")
    from contrafuse.bench.plots import image_grid

    wide = np.full((60, 240, 3), 90, np.uint8)
    tall = np.full((240, 80, 3), 160, np.uint8)
    rows = [("wide", [("IR", wide), ("VIS", wide)]), ("tall", [("IR", tall), ("VIS", tall)])]
    png = image_grid(rows, tmp_path / "grid", formats=("png",), dpi=60)[0]
    pixels = np.asarray(Image.open(png).convert("L"))
    blank_rows = (pixels > 245).all(axis=1).mean()
    assert blank_rows < 0.15, f"{blank_rows:.0%} of the figure's rows are empty"


def test_bench_without_matplotlib_warns_first_and_writes_the_tables(tmp_path: Path, monkeypatch, capsys):
    import contrafuse.bench.runner as runner  # the CLI imports run_bench from here when it runs

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    ir_dir, vis_dir = _pairs(tmp_path / "data", [(48, 56)] * 2)
    seen = {}
    real_run = runner.run_bench

    def run_bench(*args, **kwargs):
        seen["warned before fusing"] = "matplotlib is not installed" in capsys.readouterr().err
        return real_run(*args, **kwargs)

    monkeypatch.setattr(runner, "run_bench", run_bench)
    out = tmp_path / "out"
    code = main(["bench", "--data", f"toy={ir_dir},{vis_dir}", "--models", "average", "--metrics", "EN", "--out",
                 str(out), "--quiet"])
    assert code == 0 and seen["warned before fusing"]
    assert (out / "report.md").is_file() and (out / "metrics.csv").is_file() and (out / "report.html").is_file()
    assert not (out / "figures").exists()
    assert "figures/" not in (out / "report.md").read_text()
    assert capsys.readouterr().err.count("warning") == 0  # said once, before the work
