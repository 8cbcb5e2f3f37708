"""The default backend: registered models through a cached ONNX export, and its fall-backs."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, require_module

require_module("onnx", "onnx")
require_module("onnxruntime", "onnx")

from contrafuse import onnx_cache  # noqa: E402
from contrafuse.cli.main import main  # noqa: E402
from contrafuse.errors import ContrafuseError  # noqa: E402
from contrafuse.io import read_image  # noqa: E402
from contrafuse.models import create_model, list_models, model_info  # noqa: E402
from contrafuse.session import Fuser  # noqa: E402

EXAMPLE_IR, EXAMPLE_VIS = REPO_ROOT / "examples" / "ir.png", REPO_ROOT / "examples" / "vis.png"
BY_DEFAULT = [name for name in list_models() if model_info(name, load=True).capabilities.onnx_by_default]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(folder))
    return folder


def test_the_shipped_models_declare_the_default_export():
    assert {"cs2fusion", "coconet", "coconet-medical"} <= set(BY_DEFAULT)
    assert not {"average", "laplacian", "max"} & set(BY_DEFAULT)


@pytest.mark.parametrize("name", ["cs2fusion", "coconet"])
def test_default_runs_the_cached_export_within_one_grey_level_of_torch(name, cache):
    default = Fuser(name)
    assert default.runner.onnx is not None and "onnxruntime (cached export" in default.describe()
    fused = default.pair(ir=EXAMPLE_IR, vis=EXAMPLE_VIS)
    reference = Fuser(name, backend="torch").pair(ir=EXAMPLE_IR, vis=EXAMPLE_VIS)
    assert fused.shape == reference.shape and fused.dtype == reference.dtype
    assert np.abs(fused.astype(int) - reference.astype(int)).max() <= 1
    files = list((cache / "onnx").iterdir())
    assert len(files) == 1 and files[0].name.startswith(f"{name}-") and files[0].suffix == ".onnx"
    assert not [f for f in files if ".partial" in f.name]


def test_a_second_session_reuses_the_file_and_other_weights_get_their_own(cache, tmp_path):
    Fuser("cs2fusion")
    (first,) = (cache / "onnx").iterdir()
    stamp = first.stat().st_mtime_ns
    Fuser("cs2fusion")
    assert [p.name for p in (cache / "onnx").iterdir()] == [first.name] and first.stat().st_mtime_ns == stamp
    torch.manual_seed(3)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file(create_model("cs2fusion", weights=None).state_dict(), str(other))
    Fuser("cs2fusion", weights=other)
    assert len(list((cache / "onnx").iterdir())) == 2


def test_the_key_follows_the_weights_and_the_builder_options():
    torch.manual_seed(0)
    one = create_model("cs2fusion", weights=None)
    torch.manual_seed(0)
    same = create_model("cs2fusion", weights=None)
    torch.manual_seed(1)
    other = create_model("cs2fusion", weights=None)
    key = onnx_cache.export_key("cs2fusion", one)
    assert key == onnx_cache.export_key("cs2fusion", same)
    assert key != onnx_cache.export_key("cs2fusion", other)
    assert key != onnx_cache.export_key("cs2fusion", one, {"border": "zeros"})


@pytest.mark.parametrize("setting, note", [
    ({"weights": None}, "random weights"),
    ({"precision": "bf16"}, "precision bf16"),
])
def test_auto_falls_back_to_torch_and_says_why(setting, note, cache):
    fuser = Fuser("cs2fusion", **setting)
    assert fuser.runner.onnx is None
    assert f"torch on cpu (backend auto: {note}" in fuser.describe()
    assert not (cache / "onnx").exists()


def test_models_that_do_not_gain_stay_on_torch_without_a_note(cache):
    for fuser in (Fuser("laplacian"), Fuser(create_model("cs2fusion", weights=None))):
        assert fuser.runner.onnx is None and "backend auto" not in fuser.describe()
    assert Fuser("cs2fusion", backend="torch").runner.onnx is None
    assert not (cache / "onnx").exists()


def test_missing_onnxruntime_falls_back_and_an_unwritable_cache_too(cache, monkeypatch, tmp_path):
    monkeypatch.setattr(onnx_cache, "onnx_unavailable", lambda: "onnxruntime is not installed (pip install ...)")
    assert "backend auto: onnxruntime is not installed" in Fuser("cs2fusion").describe()
    monkeypatch.undo()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(blocker))
    fuser = Fuser("cs2fusion")
    assert fuser.runner.onnx is None and "the cached ONNX export failed" in fuser.describe()
    assert fuser.pair(ir=EXAMPLE_IR, vis=EXAMPLE_VIS).shape == read_image(EXAMPLE_VIS).shape


def test_backend_onnxruntime_insists(cache):
    with pytest.raises(ContrafuseError, match="backend onnxruntime cannot run cs2fusion: random weights"):
        Fuser("cs2fusion", weights=None, backend="onnxruntime")
    with pytest.raises(ContrafuseError, match="backend must be one of auto, torch, onnxruntime"):
        Fuser("cs2fusion", backend="tensorflow")


def test_images_above_the_limit_take_the_memory_bounded_torch_path(cache):
    default, reference = Fuser("cs2fusion"), Fuser("cs2fusion", backend="torch")
    default.runner.onnx_max_pixels = 100  # every pair is "large" now
    assert np.array_equal(default.pair(ir=EXAMPLE_IR, vis=EXAMPLE_VIS), reference.pair(ir=EXAMPLE_IR, vis=EXAMPLE_VIS))


def test_cli_default_and_torch_folders_agree_and_the_summary_names_the_backend(cache, tmp_path, capsys):
    ir, vis = tmp_path / "ir", tmp_path / "vis"
    ir.mkdir(), vis.mkdir()
    for folder, source in ((ir, EXAMPLE_IR), (vis, EXAMPLE_VIS)):
        shutil.copy(source, folder / "pair.png")
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(tmp_path / "auto")]) == 0
    assert "onnxruntime (cached export" in capsys.readouterr().out
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(tmp_path / "torch"), "--backend", "torch"]) == 0
    assert "torch on cpu" in capsys.readouterr().out
    auto, plain = (read_image(tmp_path / kind / "pair.png").astype(int) for kind in ("auto", "torch"))
    assert np.abs(auto - plain).max() <= 1
