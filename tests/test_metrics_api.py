"""API, registry, gray conversion, bad input and the ``eval`` command."""
from __future__ import annotations

import argparse
import json
import math
import warnings

import numpy as np
import pytest
from PIL import Image

from contrafuse import metrics
from contrafuse.cli import eval as eval_cli
from contrafuse.errors import ImageReadError, PairError
from contrafuse.metrics import MetricWarning, basic
from contrafuse.metrics._common import FusionImages


def _triplet(shape=(64, 80), seed=0):
    """(fused, ir, vis): noise IR, a VIS ramp and their mean, uint8."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape).astype(np.uint8)
    b = np.clip(np.add.outer(np.arange(shape[0]) * 3, np.arange(shape[1])) % 256, 0, 255).astype(np.uint8)
    f = ((a.astype(int) + b) // 2).astype(np.uint8)
    return f, a, b


def _images(seed=0):
    """The keywords of :func:`metrics.compute` for :func:`_triplet`."""
    f, a, b = _triplet(seed=seed)
    return {"fused": f, "ir": a, "vis": b}


# --------------------------------------------------------------------------- registry / API


def test_registry_describes_every_metric():
    assert metrics.names() == list(metrics.ALL_NAMES)
    infos = metrics.list()
    assert [info.name for info in infos] == metrics.names()
    for info in infos:
        assert isinstance(info, metrics.MetricInfo) and metrics.metric_info(info.name) is info
        assert info.direction in ("higher", "lower")
        assert info.description and info.domain and info.reduction
        assert set(info.notes) == set(metrics.CONVENTIONS)
        assert json.loads(json.dumps(info.as_dict()))["name"] == info.name
    assert metrics.metric_info("nabf").direction == "lower"
    assert metrics.metric_info("ms-ssim").name == "MS_SSIM"


def test_default_set_is_everything_but_fmi_ms_ssim_and_the_region_metrics():
    assert set(metrics.ALL_NAMES) - set(metrics.DEFAULT_NAMES) == {"FMI_pixel", "FMI_dct", "FMI_wavelet", "MS_SSIM", "FG_IR", "BG_VIS", "OUT25"}
    values = metrics.compute(**_images())
    assert list(values) == list(metrics.DEFAULT_NAMES)
    assert all(math.isfinite(v) for v in values.values())


def test_unknown_metric_and_convention_are_clear_errors():
    with pytest.raises(ValueError, match="unknown metric 'XYZ'"):
        metrics.compute(**_images(), names=["XYZ"])
    with pytest.raises(ValueError, match="unknown convention"):
        metrics.compute(**_images(), convention="pytorch")


def test_conventions_differ_where_documented():
    f, a, b = _triplet()
    names = [*metrics.DEFAULT_NAMES, "MS_SSIM"]
    c = metrics.compute(f, ir=a, vis=b, names=names, convention="cddfuse")
    m = metrics.compute(f, ir=a, vis=b, names=names, convention="matlab")
    assert m["MI"] == pytest.approx(c["MI"] / math.log(2))
    assert m["MSE"] == pytest.approx(c["MSE"] / 255**2)
    assert m["SF"] == pytest.approx(c["SF"] / 255)
    h, w = f.shape
    assert m["AG"] == pytest.approx(c["AG"] * h * w / ((h - 1) * (w - 1)))
    for same in ("EN", "SD", "VIF", "SCD", "CC", "Nabf", "MS_SSIM"):
        assert m[same] == pytest.approx(c[same])


def test_identical_images_give_the_ideal_values():
    f, _, _ = _triplet()
    m = metrics.compute(f, ir=f, vis=f, names=["SSIM", "CC", "VIF", "MS_SSIM"], convention="matlab")
    assert m["SSIM"] == pytest.approx(1.0)
    assert m["CC"] == pytest.approx(1.0)
    assert m["VIF"] == pytest.approx(2.0)
    assert m["MS_SSIM"] == pytest.approx(1.0, abs=1e-6)
    assert metrics.compute(f, ir=f, vis=f, names=["SSIM"])["SSIM"] == pytest.approx(2.0)


def test_ir_and_vis_are_keyword_only():
    f, a, b = _triplet()
    with pytest.raises(TypeError):
        metrics.compute(f, a, b)
    with pytest.raises(TypeError):
        metrics.load_triplet(f, a, b)
    with pytest.raises(TypeError):
        FusionImages(f, a, b)
    assert metrics.compute(f, vis=b, ir=a) == metrics.compute(fused=f, ir=a, vis=b)


def test_swapping_ir_and_vis_swaps_the_per_source_terms():
    """SCD's terms are per source: r(F - vis, ir) and r(F - ir, vis); swapping the sources swaps them.

    The fused image leans on the IR image, so the IR term is the larger one. The metrics that
    combine the sources symmetrically (SCD itself, CC, MI, VIF, Qabf, SSIM) keep their value.
    """
    rng = np.random.default_rng(5)
    ir, vis = (rng.integers(0, 256, (64, 80)).astype(np.float64) for _ in range(2))
    fused = np.round(0.8 * ir + 0.2 * vis)
    right = FusionImages(fused=fused, ir=ir, vis=vis)
    swapped = FusionImages(fused=fused, ir=vis, vis=ir)
    ir_term, vis_term = basic.scd_terms(right)
    assert ir_term == pytest.approx(np.corrcoef((fused - vis).ravel(), ir.ravel())[0, 1], rel=1e-12)
    assert vis_term == pytest.approx(np.corrcoef((fused - ir).ravel(), vis.ravel())[0, 1], rel=1e-12)
    assert ir_term > vis_term
    assert basic.scd_terms(swapped) == pytest.approx((vis_term, ir_term), rel=1e-12)
    names = ["SCD", "CC", "MI", "VIF", "Qabf", "SSIM"]
    assert metrics.compute(fused, ir=vis, vis=ir, names=names) == pytest.approx(
        metrics.compute(fused, ir=ir, vis=vis, names=names), rel=1e-6)


def test_colour_is_converted_like_opencv():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    gray = metrics.to_gray(rgb)
    assert gray.dtype == np.float64 and gray.shape == (4, 4)
    assert gray[0, 0] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)


def test_paths_and_arrays_agree(tmp_path):
    f, a, b = _triplet()
    paths = []
    for name, img in zip("fab", (f, a, b)):
        Image.fromarray(img).save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    assert metrics.compute(paths[0], ir=paths[1], vis=paths[2]) == metrics.compute(f, ir=a, vis=b)


# ------------------------------------------------------------------------------- bad input


def test_size_mismatch_names_the_files(tmp_path):
    f, a, b = _triplet()
    Image.fromarray(f[:-1]).save(tmp_path / "f.png")
    Image.fromarray(a).save(tmp_path / "a.png")
    with pytest.raises(PairError, match=r"f\.png 63x80.*a\.png 64x80"):
        metrics.compute(tmp_path / "f.png", ir=tmp_path / "a.png", vis=b)


def test_missing_and_non_image_files_name_the_file(tmp_path):
    f, a, b = _triplet()
    with pytest.raises(ImageReadError, match="nope.png"):
        metrics.compute(tmp_path / "nope.png", ir=a, vis=b)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.png"):
        metrics.compute(f, ir=tmp_path / "notes.png", vis=b)


def test_constant_images_give_documented_values_with_a_warning():
    f, a, b = _triplet()
    flat = np.full_like(f, 128)
    with pytest.warns(MetricWarning, match="CC"):
        cc = metrics.compute(flat, ir=a, vis=b, names=["CC"])["CC"]
    assert cc == 0.0
    with pytest.warns(MetricWarning, match="SCD"):
        scd = metrics.compute(f, ir=flat, vis=flat, names=["SCD"])["SCD"]
    assert scd == 0.0
    with pytest.warns(MetricWarning, match="VIF"):
        vif = metrics.compute(f, ir=flat, vis=b, names=["VIF"])["VIF"]
    assert math.isfinite(vif)
    black = np.zeros_like(f)  # zero padding gives a constant non-zero image edges at its border
    with pytest.warns(MetricWarning, match="Qabf"):
        assert metrics.compute(f, ir=black, vis=black, names=["Qabf"])["Qabf"] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = metrics.compute(flat, ir=a, vis=b, names=["EN", "SD", "SF", "AG", "MI", "Nabf", "SSIM", "MS_SSIM"])
    assert values["EN"] == 0 and values["SD"] == 0 and values["SF"] == 0 and values["AG"] == 0
    assert not any(math.isnan(v) for v in values.values())


def test_psnr_of_a_perfect_match_is_infinite_not_nan():
    f, _, _ = _triplet()
    with pytest.warns(MetricWarning, match="PSNR"):
        assert metrics.compute(f, ir=f, vis=f, names=["PSNR"])["PSNR"] == math.inf


def test_images_too_small_for_vif_raise():
    tiny = np.zeros((20, 20), np.uint8)
    with pytest.raises(ValueError, match="too small"):
        metrics.compute(tiny, ir=tiny, vis=tiny, names=["VIF"])


# --------------------------------------------------------------------------------- the CLI


def _folders(tmp_path, bad=True):
    for sub in ("fused", "ir", "vis"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        f, a, b = _triplet(seed=i)
        Image.fromarray(f).save(tmp_path / "fused" / f"{i:02d}.png")
        Image.fromarray(a).save(tmp_path / "ir" / f"{i:02d}.png")
        Image.fromarray(b).save(tmp_path / "vis" / f"{i:02d}.jpg" if i == 1 else tmp_path / "vis" / f"{i:02d}.png")
    if bad:
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "fused" / "03.png")
        Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "ir" / "03.png")
        Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "vis" / "03.png")
        (tmp_path / "fused" / "04.png").write_bytes(b"garbage")
        Image.fromarray(np.zeros((64, 80), np.uint8)).save(tmp_path / "fused" / "05.png")  # no sources
    return tmp_path


def _args(tmp_path, *extra):
    parser = argparse.ArgumentParser()
    eval_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(
        ["eval", "--fused", str(tmp_path / "fused"), "--ir", str(tmp_path / "ir"), "--vis", str(tmp_path / "vis"), *extra]
    )


def test_cli_json_rows_mean_std_and_convention(tmp_path):
    root = _folders(tmp_path, bad=False)
    out = root / "res.json"
    rc = eval_cli.run(_args(root, "--metrics", "EN", "MI", "--convention", "matlab", "--format", "json", "--out", str(out)))
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["convention"] == "matlab"
    assert list(doc["images"]) == ["00", "01", "02"]
    values = [doc["images"][k]["EN"] for k in doc["images"]]
    assert doc["mean"]["EN"] == pytest.approx(np.mean(values))
    assert doc["std"]["EN"] == pytest.approx(np.std(values))
    f, a, b = _triplet(seed=2)
    assert doc["images"]["02"]["MI"] == pytest.approx(metrics.compute(f, ir=a, vis=b, names=["MI"], convention="matlab")["MI"])


def test_cli_keeps_going_past_bad_images_and_exits_nonzero(tmp_path, capsys):
    root = _folders(tmp_path)
    rc = eval_cli.run(_args(root, "--metrics", "EN", "SSIM", "--format", "csv", "--workers", "2"))
    captured = capsys.readouterr()
    assert rc == 1
    lines = captured.out.strip().splitlines()
    assert lines[0] == "image,convention,EN,SSIM"
    assert [line.split(",")[0] for line in lines[1:]] == ["00", "01", "02", "mean", "std"]
    assert "3 of 6 images failed" in captured.err
    assert "03" in captured.err and "size mismatch" in captured.err
    assert "04.png" in captured.err
    assert "05.png: no matching ir or vis" in captured.err


def test_cli_out_is_not_overwritten_without_flag(tmp_path, capsys):
    root = _folders(tmp_path, bad=False)
    out = root / "table.md"
    out.write_text("keep me")
    assert eval_cli.run(_args(root, "--metrics", "EN", "--out", str(out), "--format", "markdown")) == 2
    assert out.read_text() == "keep me"
    assert "already exists" in capsys.readouterr().err
    assert eval_cli.run(_args(root, "--metrics", "EN", "--out", str(out), "--format", "markdown", "--overwrite")) == 0
    text = out.read_text()
    assert text.startswith("Convention: `cddfuse`") and "| mean |" in text
    assert not [p for p in root.iterdir() if p.name.startswith(".table.md")]  # no temp file left


def test_cli_table_and_bad_metric(tmp_path, capsys):
    root = _folders(tmp_path, bad=False)
    assert eval_cli.run(_args(root, "--metrics", "Nabf", "Qabf")) == 0
    out = capsys.readouterr().out
    assert out.startswith("convention: cddfuse") and "Nabf↓" in out and "Qabf↑" in out
    assert eval_cli.run(_args(root, "--metrics", "bogus")) == 2
    assert "unknown metric" in capsys.readouterr().err


def test_cli_json_is_strict_with_null_for_nan_and_inf(tmp_path, capsys):
    """PSNR of a fused image equal to both sources is inf (its std NaN): JSON says null, not Infinity/NaN."""
    root = _folders(tmp_path, bad=False)
    f, _, _ = _triplet(seed=7)
    for sub in ("fused", "ir", "vis"):
        Image.fromarray(f).save(root / sub / "09.png")
    out = root / "res.json"
    rc = eval_cli.run(_args(root, "--metrics", "PSNR", "EN", "--format", "json", "--out", str(out)))
    assert rc == 0
    assert "09.png: PSNR: fused image equals both sources" in capsys.readouterr().err

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    doc = json.loads(out.read_text(), parse_constant=refuse)
    assert doc["images"]["09"]["PSNR"] is None and doc["images"]["00"]["PSNR"] > 0
    assert doc["mean"]["PSNR"] is None and doc["std"]["PSNR"] is None
    assert doc["mean"]["EN"] == pytest.approx(np.mean([doc["images"][k]["EN"] for k in doc["images"]]))


def test_region_metrics_measure_the_target_against_ir_and_the_rest_against_vis():
    ir = np.full((64, 64), 40.0)
    ir[24:40, 24:40] = 220.0  # a warm square: the saliency mask
    vis = np.full((64, 64), 150.0)
    fused = vis.copy()
    fused[24:40, 24:40] = 200.0  # the target 20 grey levels off the infrared, the rest the visible image
    values = metrics.compute(fused, ir=ir, vis=vis, names=["FG_IR", "BG_VIS"])
    assert values["FG_IR"] == pytest.approx(20.0, abs=3.0) and values["BG_VIS"] < 3.0
    swapped = metrics.compute(ir, ir=ir, vis=vis, names=["FG_IR", "BG_VIS"])  # a copy of the infrared
    assert swapped["FG_IR"] == 0.0 and swapped["BG_VIS"] > 100
