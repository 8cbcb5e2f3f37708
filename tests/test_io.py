"""Reading every supported pixel format, atomic writes and folder pairing."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from contrafuse.errors import ImageReadError, ImageWriteError, PairError
from contrafuse.io import match_folders, read_image, write_image

RNG = np.random.default_rng(0)


def _save(path, array, mode=None, **kwargs):
    Image.fromarray(array, mode=mode).save(path, **kwargs)
    return path


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".jpg"])
def test_reads_gray_and_rgb_in_every_format(tmp_path, suffix):
    gray = RNG.integers(0, 256, (9, 11), dtype=np.uint8)
    rgb = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    got_gray = read_image(_save(tmp_path / f"g{suffix}", gray))
    got_rgb = read_image(_save(tmp_path / f"c{suffix}", rgb))
    assert got_gray.shape == (9, 11) and got_gray.dtype == np.uint8
    assert got_rgb.shape == (9, 11, 3) and got_rgb.dtype == np.uint8
    if suffix != ".jpg":  # lossless formats round-trip exactly
        np.testing.assert_array_equal(got_gray, gray)
        np.testing.assert_array_equal(got_rgb, rgb)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_reads_16_bit_gray(tmp_path, suffix):
    values = RNG.integers(0, 65536, (5, 7)).astype(np.uint16)
    path = write_image(tmp_path / f"t{suffix}", values)
    got = read_image(path)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, values)


def test_rgba_drops_alpha_and_palette_expands(tmp_path):
    rgba = RNG.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(read_image(_save(tmp_path / "a.png", rgba, "RGBA")), rgba[..., :3])
    palette = Image.fromarray(RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)).convert("P")
    palette.save(tmp_path / "p.png")
    expected = np.asarray(palette.convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), expected)


def test_writes_16_bit_colour_png(tmp_path):
    values = RNG.integers(0, 65536, (3, 5, 3)).astype(np.uint16)
    path = write_image(tmp_path / "c16.png", values)
    with Image.open(path) as image:  # Pillow reads 48-bit PNG as 8-bit RGB: the high bytes
        np.testing.assert_array_equal(np.asarray(image), (values >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    "content, problem",
    [(None, "file not found"), (b"", "file is empty"), (b"hello, not an image", "not a readable image")],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=problem) as caught:
        read_image(path)
    assert str(path) in str(caught.value)


def test_truncated_png_is_refused(tmp_path):
    path = _save(tmp_path / "full.png", RNG.integers(0, 256, (64, 64), dtype=np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(cut)


def test_write_never_overwrites_unless_asked(tmp_path):
    path = write_image(tmp_path / "out.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ImageWriteError, match="already exists"):
        write_image(path, np.ones((2, 2), np.uint8))
    np.testing.assert_array_equal(read_image(path), 0)
    write_image(path, np.ones((2, 2), np.uint8), overwrite=True)
    np.testing.assert_array_equal(read_image(path), 1)


def test_write_leaves_no_partial_file_on_failure(tmp_path):
    with pytest.raises(ImageWriteError, match="16-bit"):
        write_image(tmp_path / "x.jpg", np.zeros((2, 2), np.uint16))
    assert list(tmp_path.iterdir()) == []


def test_match_folders_pairs_by_stem_across_suffixes(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "vis").mkdir()
    for name in ("a.png", "b.jpg", "only_ir.png"):
        (tmp_path / "ir" / name).write_bytes(b"x")
    for name in ("a.bmp", "b.png", "only_vis.tif", "notes.txt"):
        (tmp_path / "vis" / name).write_bytes(b"x")
    pairs = match_folders(tmp_path / "ir", tmp_path / "vis")
    assert [(s, i.name, v.name) for s, i, v in pairs.pairs] == [("a", "a.png", "a.bmp"), ("b", "b.jpg", "b.png")]
    assert [p.name for p in pairs.only_in_first] == ["only_ir.png"]
    assert [p.name for p in pairs.only_in_second] == ["only_vis.tif"]


def test_duplicate_stems_are_an_error(tmp_path):
    for name in ("a.png", "a.jpg"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(PairError, match="share the stem"):
        match_folders(tmp_path, tmp_path)
