"""hubconf.py: one torch.hub entry point per registered model, loadable from a local checkout."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from contrafuse.models import list_models

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hubconf():
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entry_points(module) -> list[str]:
    """What torch.hub.list() shows: public callables of the module."""
    return sorted(name for name in dir(module) if callable(getattr(module, name)) and not name.startswith("_"))


def test_one_entry_point_per_registered_model(hubconf):
    expected = sorted(name.replace("-", "_") for name in list_models())
    assert entry_points(hubconf) == expected
    assert all(name.isidentifier() for name in expected)


def test_dependencies_are_importable(hubconf):
    assert "torch" in hubconf.dependencies
    missing = [dep for dep in hubconf.dependencies if importlib.util.find_spec(dep) is None]
    assert not missing


@pytest.mark.parametrize("name", ["average", "laplacian"])
def test_torch_hub_load_local_returns_a_fusing_module(name):
    model = torch.hub.load(str(REPO), name, source="local", weights="default")
    ir, vis = torch.rand(1, 1, 33, 21), torch.rand(1, 1, 33, 21)
    with torch.no_grad():
        fused = model(ir=ir, vis=vis)
    assert fused.shape == ir.shape and not model.training


def test_entry_points_pass_weights_through(hubconf):
    torch.manual_seed(0)
    model = hubconf.cs2fusion(weights=None)
    assert type(model).__name__ == "Cs2Fusion"
    assert "weights" in (hubconf.cs2fusion.__doc__ or "")
