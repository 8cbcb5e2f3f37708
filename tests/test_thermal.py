"""Radiometric thermal input: windows for 14/16-bit counts and float temperatures, end to end.

The radiometric images are made from a real TNO infrared image (shared data: skipped locally
without it, failing under CI): what a thermal core would deliver for the same scene, counts
7000..9000 with sensor noise, or float degrees with dead (NaN) pixels.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import contrafuse
from conftest import require_path
from contrafuse.cli.main import main
from contrafuse.color import luma01
from contrafuse.errors import PairError
from contrafuse.evaluation import score_one
from contrafuse.fusion import FuseOptions, PreparedPair, finish_pair, fuse_arrays, fuse_luma
from contrafuse.io import read_image, write_image
from contrafuse.models import create_model
from contrafuse.thermal import IrRange, IrRangeError, is_narrow_band, parse_ir_range, resolve, window

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def tno(shared_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """TNO 08 as 8-bit gray (ir, vis); stored as three equal channels."""
    folder = require_path(shared_dir / "data" / "tno42", "TNO-42 pairs")
    return read_image(folder / "ir" / "08.png")[..., 0].copy(), read_image(folder / "vis" / "08.png")[..., 0].copy()


def radiometric(ir8: np.ndarray) -> np.ndarray:
    """What a thermal core delivers for the same scene: counts 7000..9000 with sensor noise."""
    noise = np.random.default_rng(0).normal(0, 2, ir8.shape)
    return np.clip(7000 + ir8.astype(float) * (2000 / 255) + noise, 0, 65535).astype(np.uint16)


def temperatures(ir8: np.ndarray) -> np.ndarray:
    """Float degrees Celsius, 12..38, with a few dead (NaN) pixels."""
    celsius = (12 + ir8.astype(np.float32) * (26 / 255)).astype(np.float32)
    celsius[::37, ::41] = np.nan
    return celsius


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


def test_parse_every_spelling():
    assert parse_ir_range("auto") == IrRange("auto") and str(parse_ir_range("full")) == "full"
    assert parse_ir_range("7000:9000") == IrRange("fixed", 7000, 9000)
    assert parse_ir_range("p1:p99.5") == IrRange("percentile", 1, 99.5)
    assert str(parse_ir_range("-5.5:40")) == "-5.5:40"
    for bad in ("9000:7000", "p1:99", "p-1:p50", "hot", "1:2:3"):
        with pytest.raises(IrRangeError):
            parse_ir_range(bad)
    assert FuseOptions(ir_range="p1:p99").ir_range == IrRange("percentile", 1, 99)


def test_auto_leaves_8_bit_and_full_range_16_bit_alone(tno):
    ir8, _ = tno
    assert window(ir8) is None
    assert window(ir8.astype(np.uint16) * 257) is None
    narrow = radiometric(ir8)
    assert is_narrow_band(narrow)
    low, high = window(narrow)
    assert 7000 <= low < 7300 and 8400 < high <= 9000  # the scene's 0.5..99.5 percentiles
    assert window(temperatures(ir8)) is not None  # float: always a percentile window
    with pytest.raises(IrRangeError, match="no full scale"):
        window(np.zeros((4, 4), np.float32), "full")
    assert resolve(ir8) == IrRange("full") and resolve(narrow).kind == "fixed"


@pytest.mark.parametrize("make, suffix", [(radiometric, ".png"), (temperatures, ".tif")],
                         ids=["16-bit counts", "float with NaN"])
def test_radiometric_infrared_fuses_like_its_8_bit_source(tno, make, suffix, tmp_path):
    """Done-when of the issue: >= 0.95 correlation with the same pair given as 8-bit."""
    ir8, vis = tno
    reference = contrafuse.fuse(ir=ir8, vis=vis, model="cs2fusion", device="cpu")
    path = tmp_path / f"ir{suffix}"
    Image.fromarray(make(ir8)).save(path)
    fused = contrafuse.fuse(ir=path, vis=vis, model="cs2fusion", device="cpu")
    assert fused.dtype == np.uint8 and fused.shape == vis.shape  # the depth of the visible image
    assert correlation(fused, reference) >= 0.95


def test_without_the_window_the_counts_fuse_badly(tno):
    """What happened before: 7000..9000 over 0..65535 is a flat gray and the fusion loses the infrared."""
    ir8, vis = tno
    reference = contrafuse.fuse(ir=ir8, vis=vis, model="cs2fusion", device="cpu")
    counts = radiometric(ir8)
    full = contrafuse.fuse(ir=counts, vis=vis, model="cs2fusion", device="cpu", ir_range="full")
    assert full.dtype == np.uint16  # not windowed: 16-bit, as before
    assert correlation(full, reference) < 0.9
    fixed = contrafuse.fuse(ir=counts, vis=vis, model="cs2fusion", device="cpu", ir_range="7000:9000")
    assert correlation(fixed, reference) >= 0.98  # the window the counts were made with


def old_pipeline(model, *, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """The pipeline as it was before infrared windows: both lumas over their full scale."""
    options = FuseOptions()
    source = vis if vis.ndim == 3 else None
    full_scale = 65535 if np.uint16 in (ir.dtype, vis.dtype) else 255
    prepared = PreparedPair(luma01(ir, np.float32), luma01(vis, np.float32), source, full_scale)
    fused = fuse_luma(model, ir=prepared.ir_luma, vis=prepared.vis_luma, device=__import__("torch").device("cpu"))
    return finish_pair(prepared, fused, options)


@pytest.mark.parametrize("depth", [8, 16])
def test_8_bit_and_full_range_16_bit_results_are_byte_identical_to_before(tno, shared_dir, depth):
    ir8, vis8 = tno
    road = shared_dir / "data" / "roadscene"
    colour_pair = read_image(road / "ir" / "FLIR_04688.jpg"), read_image(road / "vis" / "FLIR_04688.jpg")
    model = create_model("cs2fusion", device="cpu")
    for ir, vis in [(ir8, vis8), colour_pair]:
        if depth == 16:
            ir, vis = ir.astype(np.uint16) * 257, vis.astype(np.uint16) * 257
        before = old_pipeline(model, ir=ir, vis=vis)
        for ir_range in ("auto", "full"):
            now = fuse_arrays(model, ir=ir, vis=vis, options=FuseOptions(ir_range=ir_range))
            assert now.dtype == before.dtype and np.array_equal(now, before), (depth, ir_range)


def test_float_visible_image_is_refused_naming_it(tno, tmp_path):
    ir8, vis = tno
    path = tmp_path / "vis.tif"
    Image.fromarray(vis.astype(np.float32)).save(path)
    with pytest.raises(PairError, match=r"vis\.tif: floating-point pixels are only taken for the infrared image"):
        contrafuse.fuse(ir=ir8, vis=path, model="average", device="cpu")


def test_float_tiff_reads_in_its_own_units(tmp_path):
    celsius = np.array([[12.5, np.nan], [38.0, -3.25]], np.float32)
    Image.fromarray(celsius).save(tmp_path / "t.tif")
    read = read_image(tmp_path / "t.tif")
    assert read.dtype == np.float32 and np.array_equal(read, celsius, equal_nan=True)


def test_cli_fixed_window_and_bad_window(tno, tmp_path, capsys):
    ir8, vis = tno
    write_image(tmp_path / "ir.png", radiometric(ir8))
    write_image(tmp_path / "vis.png", vis)
    args = ["fuse", "--ir", tmp_path / "ir.png", "--vis", tmp_path / "vis.png", "--model", "average"]
    assert main([str(a) for a in [*args, "--out", tmp_path / "a.png", "--ir-range", "7000:9000"]]) == 0
    assert read_image(tmp_path / "a.png").dtype == np.uint8
    assert main([str(a) for a in [*args, "--out", tmp_path / "b.png", "--ir-range", "9000:7000"]]) == 2
    err = capsys.readouterr().err
    assert "contrafuse: error:" in err and "9000:7000" in err and "Traceback" not in err


def test_cli_negative_window_parses_as_the_readme_writes_it(tmp_path, capsys):
    """``--ir-range -5:40`` (a separate argument starting with a minus) in every command that takes it."""
    celsius = np.linspace(-5.0, 40.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    Image.fromarray(celsius).save(tmp_path / "ir.tif")
    write_image(tmp_path / "vis.png", np.full((48, 64), 128, np.uint8))
    args = ["fuse", "--ir", tmp_path / "ir.tif", "--vis", tmp_path / "vis.png", "--model", "max"]
    assert main([str(a) for a in [*args, "--out", tmp_path / "spaced.png", "--ir-range", "-5:40"]]) == 0
    assert main([str(a) for a in [*args, "--out", tmp_path / "joined.png", "--ir-range=-5:40"]]) == 0
    spaced = read_image(tmp_path / "spaced.png")
    assert np.array_equal(spaced, read_image(tmp_path / "joined.png"))
    assert spaced[0, 0] == 128 and spaced[-1, -1] == 255  # -5 is black (the visible 128 wins), 40 is white
    from contrafuse.cli.main import parse_args

    for command in (["eval", "--fused", "f", "--ir", "i", "--vis", "v"], ["bench", "--data", "tno42", "--out", "o"]):
        assert parse_args([*command, "--ir-range", "-5:-1.5"]).ir_range == "-5:-1.5"
    assert parse_args(["fuse", "--ir", "-", "--vis", "v", "--out", "o"]).ir == Path("-")  # nothing else is joined


def test_cli_folder_mode_windows_each_pair(tno, tmp_path):
    ir8, vis = tno
    for stem, ir in [("counts", radiometric(ir8)), ("plain", ir8)]:
        write_image(tmp_path / "ir" / f"{stem}.png", ir)
        write_image(tmp_path / "vis" / f"{stem}.png", vis)
    out = tmp_path / "out"
    assert main(["fuse", "--ir", str(tmp_path / "ir"), "--vis", str(tmp_path / "vis"), "--out", str(out),
                 "--model", "average", "--device", "cpu"]) == 0
    counts, plain = read_image(out / "counts.png"), read_image(out / "plain.png")
    assert counts.dtype == plain.dtype == np.uint8 and correlation(counts, plain) >= 0.98


def test_eval_and_score_see_the_windowed_infrared(tno, tmp_path, capsys):
    """The metrics judge the infrared the model saw: a fusion of the counts, scored against the
    windowed counts, scores like the fusion of the 8-bit source against that source."""
    ir8, vis = tno
    counts = radiometric(ir8)
    for folder, ir in [("ir8", ir8), ("ir16", counts)]:
        write_image(tmp_path / folder / "08.png", ir)
        write_image(tmp_path / f"fused_{folder}" / "08.png", contrafuse.fuse(ir=ir, vis=vis, model="average", device="cpu"))
    vis_path = write_image(tmp_path / "vis" / "08.png", vis)
    names = ["MI", "Qabf", "SCD"]
    eight = score_one(tmp_path / "fused_ir8" / "08.png", ir=tmp_path / "ir8" / "08.png", vis=vis_path, names=names).values
    auto = score_one(tmp_path / "fused_ir16" / "08.png", ir=tmp_path / "ir16" / "08.png", vis=vis_path, names=names).values
    full = score_one(tmp_path / "fused_ir16" / "08.png", ir=tmp_path / "ir16" / "08.png", vis=vis_path, names=names,
                     ir_range="full").values
    for name in names:
        assert abs(auto[name] - eight[name]) < 0.15 * abs(eight[name]), name
    assert sum(abs(full[n] - eight[n]) for n in names) > 3 * sum(abs(auto[n] - eight[n]) for n in names)
    argv = ["eval", "--fused", str(tmp_path / "fused_ir16"), "--ir", str(tmp_path / "ir16"), "--vis", str(tmp_path / "vis"),
            "--metrics", *names, "--format", "json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["images"]["08"] == pytest.approx(auto)
    assert main([*argv, "--ir-range", "full"]) == 0
    assert json.loads(capsys.readouterr().out)["images"]["08"] == pytest.approx(full)
    assert main([*argv, "--ir-range", "hot"]) == 2


def test_bench_windows_the_models_and_the_metrics(tno, tmp_path):
    ir8, vis = tno
    write_image(tmp_path / "ir" / "08.png", radiometric(ir8))
    write_image(tmp_path / "vis" / "08.png", vis)
    argv = ["bench", "--data", f"thermal={tmp_path / 'ir'},{tmp_path / 'vis'}", "--models", "average",
            "--metrics", "MI", "--no-plots", "--quiet", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "auto")]) == 0
    assert main([*argv, "--out", str(tmp_path / "full"), "--ir-range", "full"]) == 0
    fused_auto = read_image(tmp_path / "auto" / "fused" / "thermal" / "average" / "08.png")
    fused_full = read_image(tmp_path / "full" / "fused" / "thermal" / "average" / "08.png")
    assert fused_auto.dtype == np.uint8 and fused_full.dtype == np.uint16
    recipe = json.loads((tmp_path / "full" / "fused" / "thermal" / "average" / "run.json").read_text())["recipe"]
    assert recipe["ir_range"] == "full"
    mi = {run: json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("auto", "full")}
    assert mi["auto"] != mi["full"]
