"""The one evaluation loop: scoring one job without raising, many jobs in order, summaries."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from PIL import Image

from contrafuse import evaluation, metrics


def _write(folder, name, image):
    path = folder / name
    Image.fromarray(image).save(path)
    return path


@pytest.fixture
def files(tmp_path):
    """Three scorable jobs and the pieces of bad ones: {label: path}."""
    rng = np.random.default_rng(2)
    paths = {}
    for i in range(3):
        ir = rng.integers(0, 256, (48, 56)).astype(np.uint8)
        vis = rng.integers(0, 256, (48, 56)).astype(np.uint8)
        paths[f"ir{i}"] = _write(tmp_path, f"ir{i}.png", ir)
        paths[f"vis{i}"] = _write(tmp_path, f"vis{i}.png", vis)
        paths[f"fused{i}"] = _write(tmp_path, f"fused{i}.png", ((ir.astype(int) + vis) // 2).astype(np.uint8))
    paths["small"] = _write(tmp_path, "small.png", np.zeros((20, 20), np.uint8))
    paths["flat"] = _write(tmp_path, "flat.png", np.full((48, 56), 90, np.uint8))
    paths["garbage"] = tmp_path / "garbage.png"
    paths["garbage"].write_bytes(b"not an image")
    return paths


def test_score_one_matches_compute(files):
    score = evaluation.score_one(files["fused0"], ir=files["ir0"], vis=files["vis0"], names=["EN", "VIF"])
    assert score.ok and score.error is None and score.warnings == []
    assert score.values == metrics.compute(files["fused0"], ir=files["ir0"], vis=files["vis0"], names=["EN", "VIF"])


@pytest.mark.parametrize("fused, ir, names, expected", [
    ("garbage", "ir0", ["EN"], "garbage.png: not a readable image"),
    ("fused0", "small", ["EN"], "size mismatch"),
    ("small", "small", ["VIF"], "too small"),
])
def test_score_one_reports_errors_naming_the_fused_file(files, fused, ir, names, expected):
    score = evaluation.score_one(files[fused], ir=files[ir], vis=files[ir], names=names)
    assert not score.ok and score.values is None
    assert str(files[fused]) in score.error and expected in score.error


def test_score_one_collects_metric_warnings_with_the_file(files):
    score = evaluation.score_one(files["flat"], ir=files["ir0"], vis=files["vis0"], names=["CC", "EN"])
    assert score.ok and score.values["CC"] == 0.0
    assert len(score.warnings) == 2 and all(w.startswith(f"{files['flat']}: CC") for w in score.warnings)


def test_score_many_keeps_job_order_with_workers(files):
    fused = [files["fused2"], files["garbage"], files["fused0"], files["fused1"]]
    ir = [files["ir2"], files["ir0"], files["ir0"], files["ir1"]]
    vis = [files["vis2"], files["vis0"], files["vis0"], files["vis1"]]
    serial = evaluation.score_many(fused, ir=ir, vis=vis, names=["EN", "MI"], progress=False)
    parallel = evaluation.score_many(fused, ir=ir, vis=vis, names=["EN", "MI"], workers=2, progress=False)
    assert [s.ok for s in serial] == [True, False, True, True]
    assert [s.values for s in parallel] == [s.values for s in serial]
    assert serial[0].values == evaluation.score_one(files["fused2"], ir=files["ir2"], vis=files["vis2"], names=["EN", "MI"]).values
    assert evaluation.score_many([], ir=[], vis=[]) == []


def test_score_many_rejects_bad_arguments_before_reading(files):
    with pytest.raises(ValueError, match="one of each"):
        evaluation.score_many([files["fused0"]], ir=[], vis=[files["vis0"]])
    with pytest.raises(ValueError, match="unknown metric"):
        evaluation.score_many([files["garbage"]], ir=[files["ir0"]], vis=[files["vis0"]], names=["bogus"])
    with pytest.raises(TypeError):
        evaluation.score_many([files["fused0"]], [files["ir0"]], [files["vis0"]])


def test_mean_and_std_is_population_and_nan_when_empty():
    rows = [{"EN": 1.0, "PSNR": 10.0}, {"EN": 3.0, "PSNR": math.inf}]
    stats = evaluation.mean_and_std(rows, ["EN", "PSNR"])
    assert stats.count == 2 and stats.mean["EN"] == 2.0 and stats.std["EN"] == 1.0
    assert stats.mean["PSNR"] == math.inf and math.isnan(stats.std["PSNR"])
    empty = evaluation.mean_and_std([], ["EN"])
    assert empty.count == 0 and math.isnan(empty.mean["EN"]) and math.isnan(empty.std["EN"])


def test_finite_or_none():
    assert evaluation.finite_or_none(1.5) == 1.5
    assert [evaluation.finite_or_none(v) for v in (math.nan, math.inf, -math.inf)] == [None, None, None]


def test_evaluation_imports_no_model_and_no_torch():
    import subprocess
    from pathlib import Path

    src = str(Path(evaluation.__file__).resolve().parents[1])  # the checkout under test, not an installed copy
    code = (f"import sys; sys.path.insert(0, {src!r}); import contrafuse.evaluation; "
            "print(any(m == 'torch' or m.startswith(('torch.', 'contrafuse.models')) for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
