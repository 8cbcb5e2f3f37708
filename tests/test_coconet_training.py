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
from contrafuse.training.coconet import MaskedPatchPairs
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
    data = MaskedPatchPairs(pairs, 16, flips=True, masks=MaskSource(masks_dir))
    for seed in range(6):
        item = data[(seed % 3, seed)]
        assert item["ir"].shape == item["vis"].shape == item["mask"].shape == (1, 16, 16)
        ir = item["ir"][0].numpy()
        assert np.array_equal(item["mask"][0].numpy() > 0, ir * 255 >= 114.5)  # read_mask: >= half the maximum (230 / 2)


def test_stage_lengths_must_add_up() -> None:
    with pytest.raises(ConfigError, match="must equal train.steps"):
        cfg = load_config(REPO / "configs" / "coconet_smoke.yaml", ["stages.base_steps=5"])
        from contrafuse.training.coconet import check_config

        check_config(cfg)


def test_two_stage_training_smoke(tmp_path: Path) -> None:
    _write_pairs(tmp_path / "data")
    overrides = [
        "data.dataset=folders", f"data.ir_dir={tmp_path / 'data' / 'ir'}", f"data.vis_dir={tmp_path / 'data' / 'vis'}",
        "data.patch_size=16", "train.steps=2", "train.batch_size=3", "stages.base_steps=1", "stages.contrastive_steps=1",
        f"masks.cache={tmp_path / 'mask_cache'}",
    ]
    cfg = load_config(REPO / "configs" / "coconet_smoke.yaml", overrides)
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
        out = model(torch.rand(1, 1, 9, 11), torch.rand(1, 1, 9, 11))
    assert out.shape == (1, 1, 9, 11) and torch.isfinite(out).all()
