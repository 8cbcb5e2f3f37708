"""The fusing pipeline: colour handling, bit depth, any size, banded == whole image, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import contrafuse
from contrafuse.cli.main import main
from contrafuse.color import rgb_to_luma, rgb_to_ycbcr
from contrafuse.fusion import Rounding, quantise
from contrafuse.errors import ContrafuseError, ImageReadError, ImageWriteError, PairError
from contrafuse.io import read_image
from contrafuse.models import create_model, list_models

RNG = np.random.default_rng(7)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _gray(h, w, dtype=np.uint8):
    return RNG.integers(0, np.iinfo(dtype).max + 1, (h, w)).astype(dtype)


def _rgb(h, w):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def cs2fusion():
    torch.manual_seed(0)
    return create_model("cs2fusion", weights=None)


def test_gray_in_gray_out():
    out = contrafuse.fuse(ir=_gray(20, 30), vis=_gray(20, 30), model="average")
    assert out.shape == (20, 30) and out.dtype == np.uint8


def test_colour_visible_keeps_its_chroma():
    vis, ir = _rgb(16, 24), _gray(16, 24)
    out = contrafuse.fuse(ir=ir, vis=vis, model="average")
    assert out.shape == (16, 24, 3)
    _, cb_in, cr_in = rgb_to_ycbcr(vis.astype(float))
    y_out, cb_out, cr_out = rgb_to_ycbcr(out.astype(float))
    unclipped = (out > 3).all(-1) & (out < 252).all(-1)
    np.testing.assert_allclose(cb_out[unclipped], cb_in[unclipped], atol=1.5)
    np.testing.assert_allclose(cr_out[unclipped], cr_in[unclipped], atol=1.5)
    expected_y = 0.5 * ir + 0.5 * rgb_to_ycbcr(vis.astype(float))[0]
    np.testing.assert_allclose(y_out[unclipped], expected_y[unclipped], atol=1.5)


def test_pseudo_colour_functional_image_gives_the_chroma_for_medical_pairs():
    pet, mri = _rgb(12, 12), _gray(12, 12)
    out = contrafuse.fuse(ir=pet, vis=mri, model="average")
    assert out.ndim == 3 and not np.array_equal(out[..., 0], out[..., 1])


def test_color_modes_force_gray_or_colour():
    vis, ir = _rgb(8, 8), _gray(8, 8)
    assert contrafuse.fuse(ir=ir, vis=vis, model="average", color="gray").shape == (8, 8)
    forced = contrafuse.fuse(ir=ir, vis=_gray(8, 8), model="average", color="color")
    assert forced.shape == (8, 8, 3) and np.array_equal(forced[..., 0], forced[..., 2])


def test_sixteen_bit_inputs_give_sixteen_bit_output():
    ir, vis = _gray(10, 10, np.uint16), _gray(10, 10, np.uint16)
    out = contrafuse.fuse(ir=ir, vis=vis, model="average")
    assert out.dtype == np.uint16
    np.testing.assert_allclose(out, (ir.astype(float) + vis) / 2, atol=1)


def test_rounding_modes():
    values = np.array([10.4, 10.6, -3.0, 300.0]) / 255
    np.testing.assert_array_equal(quantise(values, 255, Rounding.ROUND), [10, 11, 0, 255])
    np.testing.assert_array_equal(quantise(values, 255, Rounding.TRUNCATE), [10, 10, 0, 255])
    ir, vis = np.full((2, 2), 10, np.uint8), np.full((2, 2), 14, np.uint8)
    assert (contrafuse.fuse(ir=ir, vis=vis, model="average") == 12).all()


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (123, 77)])
@pytest.mark.parametrize("model", list_models())
def test_any_size(size, model):
    torch.manual_seed(0)
    network = create_model(model, weights=None)
    out = contrafuse.fuse(ir=_gray(*size), vis=_rgb(*size), model=network)
    assert out.shape == (*size, 3)


@pytest.mark.parametrize("border", ["replicate", "zeros"])
@pytest.mark.parametrize("size", [(7, 13), (123, 77), (150, 41)])
def test_banded_inference_equals_whole_image(size, border):
    torch.manual_seed(0)
    cs2fusion = create_model("cs2fusion", weights=None, border=border)
    ir, vis = torch.rand(1, 1, *size), torch.rand(1, 1, *size)
    with torch.inference_mode():
        whole = cs2fusion(ir=ir, vis=vis)
    cached = cs2fusion.fuse(ir=ir, vis=vis, band_rows=16)
    recomputed = cs2fusion.fuse(ir=ir, vis=vis, band_rows=16, max_cached_pixels=0)
    torch.testing.assert_close(cached, whole, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(recomputed, whole, atol=2e-6, rtol=1e-5)


def _top_row_outside_its_neighbours(fused: np.ndarray, tolerance: float = 2.0) -> float:
    """Fraction of columns whose row 0 lies outside the range of rows 1-4 (by more than ``tolerance`` grey levels)."""
    fused = fused.astype(float)
    below, above = fused[1:5].min(axis=0) - tolerance, fused[1:5].max(axis=0) + tolerance
    return float(((fused[0] < below) | (fused[0] > above)).mean())


@pytest.mark.parametrize("name", ["08", "20"])
def test_cs2fusion_top_row_continues_the_image_by_default(shared_dir, name):
    """The zero-padded network copies the infrared image's top row into the output (the authors'
    outputs do too); the default replicated border gives a top row like its neighbours."""
    ir, vis = (shared_dir / f"data/tno42/{kind}/{name}.png" for kind in ("ir", "vis"))
    fused = contrafuse.fuse(ir=ir, vis=vis, model="cs2fusion", device="cpu", color="gray")
    authors = contrafuse.fuse(ir=ir, vis=vis, model="cs2fusion", device="cpu", color="gray",
                              model_options={"border": "zeros"})
    assert _top_row_outside_its_neighbours(fused) <= 0.25
    assert _top_row_outside_its_neighbours(authors) >= 0.4  # the line the default removes
    infrared = read_image(ir)
    infrared_top = (rgb_to_luma(infrared) if infrared.ndim == 3 else infrared.astype(float))[0]
    assert np.abs(authors[0] - infrared_top).mean() < 5 < np.abs(fused[0] - infrared_top).mean()
    assert np.array_equal(fused[12:-12, 12:-12], authors[12:-12, 12:-12])  # only the border changes


def test_border_is_a_model_option_of_the_cli_and_is_checked(tmp_path, capsys):
    ir, vis = str(EXAMPLES / "ir.png"), str(EXAMPLES / "vis.png")
    out = tmp_path / "zeros.png"
    assert main(["fuse", "--ir", ir, "--vis", vis, "--out", str(out), "--model-option", "border=zeros"]) == 0
    expected = contrafuse.fuse(ir=ir, vis=vis, model_options={"border": "zeros"}, device="cpu")
    assert np.array_equal(read_image(out), expected)
    assert not np.array_equal(expected, contrafuse.fuse(ir=ir, vis=vis, device="cpu"))
    for option, message in (("border=mirror", "border must be one of replicate, zeros, got 'mirror'"),
                            ("width=3", "model 'cs2fusion' has no option(s) width; options: border"),
                            ("border", "expected KEY=VALUE")):
        assert main(["fuse", "--ir", ir, "--vis", vis, "--out", str(tmp_path / "x.png"), "--model-option", option]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ContrafuseError, match="apply to a registered model name"):
        contrafuse.fuse(ir=ir, vis=vis, model=create_model("average"), model_options={"border": "zeros"})


def test_size_mismatch_names_both_files_and_resize_opts_in(tmp_path):
    Image.fromarray(_gray(10, 12)).save(tmp_path / "ir.png")
    Image.fromarray(_rgb(20, 24)).save(tmp_path / "vis.png")
    with pytest.raises(PairError, match=r"ir\.png is 12x10.*vis\.png is 24x20"):
        contrafuse.fuse(ir=tmp_path / "ir.png", vis=tmp_path / "vis.png", model="average")
    out = contrafuse.fuse(ir=tmp_path / "ir.png", vis=tmp_path / "vis.png", model="average", resize=True)
    assert out.shape == (20, 24, 3)


def test_unreadable_input_names_the_file(tmp_path):
    (tmp_path / "ir.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(_gray(4, 4)).save(tmp_path / "vis.png")
    with pytest.raises(ImageReadError, match="ir.png"):
        contrafuse.fuse(ir=tmp_path / "ir.png", vis=tmp_path / "vis.png", model="average")


def _folders(tmp_path, names=("a", "b", "c")):
    ir, vis = tmp_path / "ir", tmp_path / "vis"
    ir.mkdir()
    vis.mkdir()
    for name in names:
        Image.fromarray(_gray(9, 9)).save(ir / f"{name}.png")
        Image.fromarray(_rgb(9, 9)).save(vis / f"{name}.jpg")
    return ir, vis


def test_folder_mode_keeps_going_past_a_bad_pair(tmp_path, capsys):
    ir, vis = _folders(tmp_path)
    Image.fromarray(_gray(5, 5)).save(ir / "b.png")  # size mismatch
    (ir / "orphan.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    status = main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--model", "average"])
    assert status == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    err = capsys.readouterr().err
    assert "failed b:" in err and "sizes differ" in err and "orphan.png" in err


def test_folder_mode_does_not_overwrite_unless_asked(tmp_path, capsys):
    ir, vis = _folders(tmp_path, ("a",))
    out = tmp_path / "out"
    (out).mkdir()
    (out / "a.png").write_bytes(b"keep me")
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--model", "average"]) == 1
    assert (out / "a.png").read_bytes() == b"keep me"
    assert "already exists" in capsys.readouterr().err
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--model", "average", "--overwrite"]) == 0
    assert read_image(out / "a.png").shape == (9, 9, 3)
    assert [p.name for p in out.iterdir()] == ["a.png"]  # no temporary files left behind


def test_single_pair_cli_refuses_to_overwrite(tmp_path, capsys):
    ir, vis = _folders(tmp_path, ("a",))
    target = tmp_path / "fused.png"
    args = ["fuse", "--ir", str(ir / "a.png"), "--vis", str(vis / "a.jpg"), "--out", str(target), "--model", "laplacian"]
    assert main(args) == 0
    before = target.read_bytes()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err and target.read_bytes() == before


def test_write_error_type_is_reported(tmp_path):
    with pytest.raises(ImageWriteError):
        contrafuse.write_image(tmp_path / "x.gif", np.zeros((2, 2), np.uint8))


class ReturnsIr(torch.nn.Module):
    """A 'model' whose output is its `ir` input: any layer that swaps the pair shows up."""

    def forward(self, *, ir, vis):
        return ir


def test_every_pipeline_layer_hands_ir_as_ir(tmp_path):
    ir, vis = _gray(12, 14), _gray(12, 14)
    assert np.array_equal(contrafuse.fuse(ir=ir, vis=vis, model=ReturnsIr()), ir)
    folders = _folders(tmp_path, ("a",))
    report = contrafuse.fuse_folders(ir=folders[0], vis=folders[1], out=tmp_path / "out", model=ReturnsIr(),
                                     color="gray", progress=False)
    assert report.ok and np.array_equal(read_image(report.written[0]), read_image(folders[0] / "a.png"))


def _hue_degrees(rgb: np.ndarray) -> np.ndarray:
    import colorsys

    flat = rgb.reshape(-1, 3).astype(float) / 255
    return np.array([colorsys.rgb_to_hsv(*p)[0] * 360 for p in flat])


def test_pseudo_colour_keeps_its_hue_where_clipping_would_shift_it():
    pet = np.zeros((16, 16, 3), np.uint8)
    pet[...] = (230, 200, 20)  # a saturated yellow-orange tracer colour
    mri = np.full((16, 16), 30, np.uint8)  # dark MRI: the fused luma is darker than the PET's
    kept = contrafuse.fuse(ir=pet, vis=mri, model="average")  # gamut auto: the chroma comes from --ir
    clipped = contrafuse.fuse(ir=pet, vis=mri, model="average", gamut="clip")
    hue = _hue_degrees(pet[:1, :1])[0]
    assert np.abs(_hue_degrees(kept) - hue).max() < 1.0
    assert np.abs(_hue_degrees(clipped) - hue).max() > 3.0
    expected_y = 0.5 * rgb_to_ycbcr(pet.astype(float))[0] + 0.5 * 30
    assert np.abs(rgb_to_ycbcr(kept.astype(float))[0] - expected_y).max() < 1.0  # the fused luma is kept


def test_visible_colour_is_clipped_as_the_reference_code_does():
    vis, ir = _rgb(16, 24), _gray(16, 24)
    assert np.array_equal(contrafuse.fuse(ir=ir, vis=vis, model="average"),
                          contrafuse.fuse(ir=ir, vis=vis, model="average", gamut="clip"))
