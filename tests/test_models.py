"""Every registered model: builds, fuses any size, keeps the [0, 1] contract."""
from __future__ import annotations

import pytest
import torch

from contrafuse import create_model, list_models
from contrafuse.errors import WeightsError
from contrafuse.models import model_info

MODELS = list_models()


def test_registry_lists_the_methods():
    assert {"average", "laplacian", "cs2fusion", "coconet", "coconet-medical"} <= set(MODELS)
    assert list_models("coco*") == ["coconet", "coconet-medical"]


@pytest.mark.parametrize("name", MODELS)
def test_model_fuses_odd_sizes(name):
    torch.manual_seed(0)
    model = create_model(name, weights=None)
    assert not model.training
    ir, vis = torch.rand(1, 1, 19, 23), torch.rand(1, 1, 19, 23)
    with torch.inference_mode():
        out = model(ir, vis)
    assert out.shape == (1, 1, 19, 23) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["average", "laplacian"])
def test_classical_rules_return_identical_sources_unchanged(name):
    image = torch.rand(1, 1, 33, 40)
    with torch.inference_mode():
        torch.testing.assert_close(create_model(name)(image, image), image, atol=1e-5, rtol=0)


def test_laplacian_keeps_the_stronger_detail():
    flat = torch.full((1, 1, 32, 32), 0.5)
    texture = flat + 0.2 * (torch.arange(32)[None, :] % 2 * 2 - 1).float()  # finest-scale stripes
    with torch.inference_mode():
        fused = create_model("laplacian")(flat, texture)
        averaged = create_model("average")(flat, texture)
    assert fused[0, 0, 8:24, 8:24].std() > 1.8 * averaged[0, 0, 8:24, 8:24].std()  # not halved


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(KeyError, match="cs2fusion"):
        create_model("nope")


def test_model_without_shipped_weights_says_how_to_get_them(monkeypatch):
    from contrafuse.models import registry

    monkeypatch.setattr(registry, "default_weights_path", lambda name: None)
    with pytest.raises(WeightsError, match="--weights"):
        create_model("cs2fusion")
    assert model_info("cs2fusion").needs_weights
