"""Every registered model: builds, fuses any size, keeps the [0, 1] contract."""
from __future__ import annotations

import pytest
import torch

from contrafuse import create_model, list_models
from contrafuse.errors import WeightsError
from contrafuse.models import model_info

MODELS = list_models()


def test_registry_lists_the_methods():
    assert {"average", "max", "laplacian", "cs2fusion", "coconet", "coconet-medical"} <= set(MODELS)
    assert list_models("coco*") == ["coconet", "coconet-medical"]


@pytest.mark.parametrize("name", MODELS)
def test_model_fuses_odd_sizes(name):
    torch.manual_seed(0)
    model = create_model(name, weights=None)
    assert not model.training
    ir, vis = torch.rand(1, 1, 19, 23), torch.rand(1, 1, 19, 23)
    with torch.inference_mode():
        out = model(ir=ir, vis=vis)
    assert out.shape == (1, 1, 19, 23) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["average", "max", "laplacian"])
def test_classical_rules_return_identical_sources_unchanged(name):
    image = torch.rand(1, 1, 33, 40)
    with torch.inference_mode():
        torch.testing.assert_close(create_model(name)(ir=image, vis=image), image, atol=1e-5, rtol=0)


def test_max_keeps_the_brighter_source_at_every_pixel():
    ir, vis = torch.rand(1, 1, 17, 21), torch.rand(1, 1, 17, 21)
    with torch.inference_mode():
        fused = create_model("max")(ir=ir, vis=vis)
    assert torch.equal(fused, torch.where(ir >= vis, ir, vis))
    assert (fused == ir).any() and (fused == vis).any()  # both sources contribute


def test_laplacian_keeps_the_stronger_detail():
    flat = torch.full((1, 1, 32, 32), 0.5)
    texture = flat + 0.2 * (torch.arange(32)[None, :] % 2 * 2 - 1).float()  # finest-scale stripes
    with torch.inference_mode():
        fused = create_model("laplacian")(ir=flat, vis=texture)
        averaged = create_model("average")(ir=flat, vis=texture)
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


def _target_pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An infrared image with a warm square on a cold background, a textured visible image with
    a dark patch where the square is, and the square's mask."""
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    square = ((yy - 48).abs() < 12) & ((xx - 48).abs() < 12)
    noise = 0.02 * torch.randn(96, 96, generator=torch.Generator().manual_seed(0))
    ir = torch.where(square, 0.9, 0.15) + noise
    vis = torch.where(square, 0.1, 0.5 + 0.25 * torch.sin(xx / 2) * torch.sin(yy / 3))
    return ir[None, None], vis[None, None], square


@pytest.mark.parametrize("name", MODELS)
def test_swapping_ir_and_vis_changes_the_result_as_the_model_defines(name):
    model = create_model(name)  # the shipped weights: a random network has no roles yet
    ir, vis, square = _target_pair()
    with torch.inference_mode():
        normal, swapped = model(ir=ir, vis=vis)[0, 0], model(ir=vis, vis=ir)[0, 0]
    if not model_info(name).needs_weights:  # the classical rules are symmetric in their two inputs
        torch.testing.assert_close(normal, swapped, atol=1e-6, rtol=0)
        return
    assert normal[square].mean() > 0.7  # the warm target given as `ir` is kept
    assert (normal - swapped).abs().max() > 2 / 255  # the two inputs have different roles


def test_coconet_keeps_the_warm_target_of_the_infrared():
    """The target comes from the infrared, and the visible texture around it stays. (Swapped, the
    bright square is then a bright region of the visible image, which the local information
    measure also keeps, so the swap is checked by the test above, not by the square's level.)"""
    model = create_model("coconet")
    ir, vis, square = _target_pair()
    with torch.inference_mode():
        fused = model(ir=ir, vis=vis)[0, 0]
    assert fused[square].mean() > 0.7
    assert fused[~square].std() > 0.5 * vis[0, 0][~square].std()


def test_inputs_are_not_positional():
    with pytest.raises(TypeError):
        create_model("average")(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [(7, 13), (123, 77)])
def test_fast_path_equals_the_plain_forward(name, size):
    """A model's ``fuse`` (what the pipeline calls when it exists) gives its forward's result."""
    torch.manual_seed(0)
    model = create_model(name, weights=None)
    if not hasattr(model, "fuse"):  # the pipeline runs the forward itself
        return
    ir, vis = torch.rand(2, 1, *size), torch.rand(2, 1, *size)
    with torch.inference_mode():
        torch.testing.assert_close(model.fuse(ir=ir, vis=vis), model(ir=ir, vis=vis), atol=2e-5, rtol=1e-5)
