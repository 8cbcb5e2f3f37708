"""CoCoNet recipe: masked patches, both stages through the shared engine, export."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrafuse.data import PairFiles
from contrafuse.data.masks import MaskSource
from contrafuse.models import create_model
from contrafuse.models.coconet import CoCoNet
from contrafuse.models.weights import read_safetensors
from contrafuse.training import ConfigError
from contrafuse.training.checkpoint import load_checkpoint
from contrafuse.training.coconet import check_config, masked_patch_pairs
from contrafuse.training.recipe import get_recipe
from contrafuse.training.engine import load_config, train

REPO = Path(__file__).resolve().parents[1]


def _write_pairs(folder: Path, count: int = 3, size: tuple[int, int] = (40, 48)) -> None:
    rng = np.random.default_rng(0)
    (folder / "ir").mkdir(parents=True)
    (folder / "vis").mkdir()
    for i in range(count):
        ir = (rng.random(size) * 80).astype(np.uint8)
        ir[10:22, 12 + 4 * i : 26 + 4 * i] = 230  # a warm target for the saliency masks
        vis = (rng.random((*size, 3)) * 255).astype(np.uint8)
        Image.fromarray(ir).save(folder / "ir" / f"p{i}.png")
        Image.fromarray(vis).save(folder / "vis" / f"p{i}.png")


def test_masks_are_cut_with_the_patches(tmp_path: Path) -> None:
    _write_pairs(tmp_path)
    pairs = [PairFiles(f"p{i}", tmp_path / "ir" / f"p{i}.png", tmp_path / "vis" / f"p{i}.png") for i in range(3)]
    masks_dir = tmp_path / "masks"
    masks_dir.mkdir()
    for i in range(3):  # user masks = the infrared image itself, so mask and patch must agree
        Image.fromarray(np.asarray(Image.open(pairs[i].ir))).save(masks_dir / f"p{i}.png")
    data = masked_patch_pairs(pairs, 16, flips=True, masks=MaskSource(masks_dir))
    for seed in range(6):
        item = data[(seed % 3, seed)]
        assert item["ir"].shape == item["vis"].shape == item["mask"].shape == (1, 16, 16)
        ir = item["ir"][0].numpy()
        assert np.array_equal(item["mask"][0].numpy() > 0, ir * 255 >= 114.5)  # read_mask: >= half the maximum (230 / 2)


def test_stage_lengths_must_add_up() -> None:
    cfg = load_config("coconet_smoke", ["stages.base_steps=5"])
    with pytest.raises(ConfigError, match="must equal train.steps"):
        check_config(cfg)


def test_constant_rate_by_default_and_warmup_then_milestone_when_set() -> None:
    recipe = get_recipe("coconet")
    cfg = load_config("coconet_smoke", [])
    models = recipe.build_models(cfg)
    optimizers, schedulers = recipe.build_optimizers(models, cfg)
    assert schedulers == {}  # the official constant rate

    cfg = load_config("coconet_smoke", ["train.steps=10", "stages.base_steps=6", "stages.contrastive_steps=4",
                                        "optim.lr=0.001", "optim.warmup_steps=2", "optim.milestones=[0.8]", "optim.gamma=0.5"])
    optimizers, schedulers = recipe.build_optimizers(models, cfg)
    rates = []
    for _ in range(10):
        rates.append(optimizers["net"].param_groups[0]["lr"])
        optimizers["net"].step()
        schedulers["net"].step()
    assert rates == pytest.approx([5e-4] + [1e-3] * 7 + [5e-4] * 2)


@pytest.mark.parametrize("setting", ["optim.gamma=0", "optim.milestones=[1.5]", "optim.warmup_steps=-1"])
def test_schedule_settings_out_of_range_are_refused(setting: str) -> None:
    with pytest.raises(ConfigError, match=setting.split("=")[0]):
        check_config(load_config("coconet_smoke", [setting]))


def test_vgg_weights_setting_feeds_both_vgg_roles(tmp_path: Path) -> None:
    """``--set vgg.weights=FILE``: a torchvision vgg19 state dict for the trunk and the loss."""
    generator = torch.Generator().manual_seed(7)
    widths = [(3, 64), (64, 64), None, (64, 128), (128, 128), None] + [(128, 256)] + [(256, 256)] * 3 + [None]
    widths += [(256, 512)] + [(512, 512)] * 3 + [None] + [(512, 512)] * 4
    state, index = {}, 0
    for shape in widths:  # torchvision's vgg19().features numbering: conv, ReLU, ..., pool
        if shape is None:
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(shape[1], shape[0], 3, 3, generator=generator) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(shape[1])
        index += 2
    torch.save(state, tmp_path / "vgg19-imagenet.pth")
    recipe = get_recipe("coconet")
    cfg = load_config("coconet_smoke", [f"vgg.weights={tmp_path / 'vgg19-imagenet.pth'}"])
    recipe.configure(cfg)
    assert cfg.vgg.source.startswith("file=vgg19-imagenet.pth sha256=")
    net = recipe.build_models(cfg)["net"]
    gray = state["features.0.weight"][:, 0:1] * 0.299 + state["features.0.weight"][:, 1:2] * 0.587 + state["features.0.weight"][:, 2:3] * 0.114
    torch.testing.assert_close(net.vgg.features[0].weight, gray)
    torch.testing.assert_close(net.vgg.features[16].weight, state["features.16.weight"])
    torch.testing.assert_close(recipe.loss_features(torch.device("cpu")).features[28].weight, state["features.28.weight"])


def test_two_stage_training_smoke(tmp_path: Path) -> None:
    _write_pairs(tmp_path / "data")
    overrides = [
        "data.dataset=folders", f"data.ir_dir={tmp_path / 'data' / 'ir'}", f"data.vis_dir={tmp_path / 'data' / 'vis'}",
        "data.patch_size=16", "train.steps=2", "train.batch_size=3", "stages.base_steps=1", "stages.contrastive_steps=1",
        f"masks.cache={tmp_path / 'mask_cache'}",
    ]
    cfg = load_config("coconet_smoke", overrides)
    seen: list[dict] = []
    result = train(cfg, tmp_path / "run", on_step_end=lambda step, losses: seen.append(dict(losses)))
    assert "contrast_fg" not in seen[0] and {"base", "ssim", "intensity", "total"} <= set(seen[0])
    assert {"contrast_fg", "contrast_bg"} <= set(seen[1])
    assert all(np.isfinite(v) for losses in seen for v in losses.values())
    checkpoint = load_checkpoint(result.checkpoint)
    adam_steps = {float(s["step"]) for s in checkpoint["optimizers"]["net"]["state"].values()}
    assert adam_steps == {2.0}  # one Adam across both stages: its moments carried over
    assert len(list((tmp_path / "mask_cache").iterdir())) == 3

    tensors, metadata = read_safetensors(result.weights)
    assert metadata["model"] == "coconet"
    assert json.loads(metadata["config"])["vgg"]["source"] == "random-kaiming-normal-fan-out seed=0"
    model = create_model("coconet", weights=result.weights)
    assert isinstance(model, CoCoNet) and not model.training
    with torch.inference_mode():
        out = model(ir=torch.rand(1, 1, 9, 11), vis=torch.rand(1, 1, 9, 11))
    assert out.shape == (1, 1, 9, 11) and torch.isfinite(out).all()
