"""Training engine + CS2Fusion recipe: config, sample stream, loss decrease, exact resume, bad data, DDP."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrafuse.cli.main import main as cli_main
from contrafuse.errors import ImageReadError
from contrafuse.models.cs2fusion import Cs2Fusion
from contrafuse.models.weights import load_weights
from contrafuse.training import ConfigError, Stage
from contrafuse.training.checkpoint import load_checkpoint
from contrafuse.training.cs2fusion import Cs2FusionRecipe
from contrafuse.training.distributed import seed_everything
from contrafuse.training.engine import load_config, train
from contrafuse.training.sampling import SampleStream
from contrafuse.losses.cs2fusion import backbone_loss

from authors_cs2fusion_step import authors_training_step


def smooth_pairs(root: Path, count: int = 4, size: int = 32) -> Path:
    """Small aligned pairs with structure (blobs and ramps): IR gray, VIS colour."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for sub in ("ir", "vis"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cy, cx = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        ir = (40 + 200 * blob).astype(np.uint8)
        vis = np.stack([80 + 120 * xx, 60 + 100 * yy, 90 + 60 * xx * yy], -1).astype(np.uint8)
        Image.fromarray(ir).save(root / "ir" / f"p{i}.png")
        Image.fromarray(vis).save(root / "vis" / f"p{i}.png")
    return root


def tiny_config(data: Path, steps: int = 6, **extra: str):
    overrides = [
        "data.dataset=folders", f"data.ir_dir={data / 'ir'}", f"data.vis_dir={data / 'vis'}", "data.patch_size=16",
        "data.workers=0", f"train.steps={steps}", "train.batch_size=2", "train.device=cpu", "train.checkpoint_every=2",
        "train.log_every=1", *[f"{k}={v}" for k, v in extra.items()],
    ]
    return load_config(None, overrides, method="cs2fusion")


def test_config_yaml_overrides_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: cs2fusion\noptim:\n  lr_backbone: 1e-3\ntrain:\n  steps: 10\n")
    cfg = load_config(path, ["optim.lr_cpn=5e-5", "loss.augmented_positive=code"])
    assert (cfg.optim.lr_backbone, cfg.optim.lr_cpn, cfg.train.steps) == (1e-3, 5e-5, 10)
    assert cfg.loss.augmented_positive == "code" and cfg.data.patch_size == 128
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path, ["optim.lr=1"])
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(path, ["train.steps=abc"])


@pytest.mark.parametrize("override, key", [
    ("loss.augmented_positive=both", "augmented_positive"),
    ("loss.prior_weight=-1", "prior_weight"),
    ("loss.prior_gamma=0", "prior_gamma"),
    ("loss.prior_shape=max", "prior_shape"),
    ("loss.prior_softness=0", "prior_softness"),
    ("loss.backbone_weights=both", "backbone_weights"),
])
def test_recipe_refuses_loss_settings_out_of_range(tmp_path, override, key):
    path = tmp_path / "c.yaml"
    path.write_text("method: cs2fusion\n")
    with pytest.raises(ConfigError, match=key):
        Cs2FusionRecipe().configure(load_config(path, [override]))


def test_one_process_sees_the_samples_of_two():
    single = SampleStream(7, seed=3, batch_size=4)
    ranks = [SampleStream(7, seed=3, batch_size=2, rank=r, world_size=2) for r in range(2)]
    for step in range(5):
        both = [ranks[r].key(k) for r in range(2) for k in ranks[r].samples_of_step(step)]
        assert both == [single.key(k) for k in single.samples_of_step(step)]
    resumed = iter(SampleStream(7, seed=3, batch_size=4, start_step=2))
    assert [next(resumed) for _ in range(4)] == [single.key(k) for k in single.samples_of_step(2)]


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_fast_step_matches_reference_step(tmp_path, variant):
    cfg = tiny_config(smooth_pairs(tmp_path), **{"loss.augmented_positive": variant})
    recipe = Cs2FusionRecipe()
    recipe.configure(cfg)
    batch = recipe.build_dataset(cfg, "train")
    batch = torch.utils.data.default_collate([batch[(i, i)] for i in range(3)])
    torch.manual_seed(0)
    fast = recipe.build_models(cfg)
    slow = copy.deepcopy(fast)
    fast_opt, _ = recipe.build_optimizers(fast, cfg)
    slow_opt, _ = recipe.build_optimizers(slow, cfg)
    losses = recipe.training_step(fast, fast_opt, batch, 0, Stage("main", 1))
    expected = authors_training_step(slow["backbone"], slow["cpn"], slow_opt, batch, cfg)
    assert float(losses["fusion"]) == pytest.approx(expected["fusion"], rel=1e-5)
    assert float(losses["contrast"]) == pytest.approx(expected["contrast"], rel=1e-5)
    # Same gradients (Adam's first update is ~lr * sign(g), so compare what it was fed).
    for name in ("backbone", "cpn"):
        scale = max(float(p.grad.abs().max()) for p in slow[name].parameters())  # some true gradients are 0
        for (key, a), b in zip(fast[name].named_parameters(), slow[name].parameters()):
            assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-4 * scale), f"{name}.{key}"



def fusion_loss_on(models_state: dict, cfg, batch) -> float:
    recipe = Cs2FusionRecipe()
    recipe.configure(cfg)
    models = recipe.build_models(cfg)
    for name, module in models.items():
        module.load_state_dict(models_state[name])
    with torch.no_grad():
        ir, vis = batch["ir"] * 255, batch["vis"] * 255
        out = models["backbone"](ir=ir, vis=vis)
        p = models["cpn"](features_vis=out.features[:, :64], features_ir=out.features[:, 64:])[0].map
        return float(backbone_loss(out.fused, ir=ir, vis=vis, compensation=p).total)


def test_few_steps_reduce_the_loss_and_export(tmp_path):
    data = smooth_pairs(tmp_path / "data")
    cfg = tiny_config(data, steps=12, **{"optim.milestones": "[1.0]"})
    recipe = Cs2FusionRecipe()
    recipe.configure(cfg)
    dataset = recipe.build_dataset(cfg, "train")
    batch = torch.utils.data.default_collate([dataset[(i % 4, 100 + i)] for i in range(4)])
    seed_everything(cfg.train.seed)
    initial = {k: m.state_dict() for k, m in recipe.build_models(cfg).items()}
    result = train(cfg, tmp_path / "run")
    final = load_checkpoint(result.checkpoint)["models"]
    assert fusion_loss_on(final, cfg, batch) < 0.7 * fusion_loss_on(initial, cfg, batch)
    model = Cs2Fusion()
    metadata = load_weights(model, result.weights, "cs2fusion")
    assert metadata["model"] == "cs2fusion" and metadata["steps"] == "12"
    assert json.loads(metadata["config"])["optim"]["lr_backbone"] == 2e-3
    assert json.loads(metadata["data"])["pairs"] == 4 and "device" in metadata and "wall_time_s" in metadata
    assert torch.equal(model.backbone.decoder[0].weight, final["backbone"]["decoder.0.weight"])
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 12 and "fusion" in json.loads(lines[-1])


class Interrupt(Exception):
    pass


def test_resume_after_kill_is_bit_identical(tmp_path):
    data = smooth_pairs(tmp_path / "data")
    cfg = tiny_config(data, steps=6)
    whole = train(cfg, tmp_path / "whole")

    def kill_after_step_3(step: int, _losses: dict) -> None:
        if step == 3:  # steps 0..3 done, last checkpoint at step 2: the 4th step is lost
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "broken", on_step_end=kill_after_step_3)
    assert load_checkpoint(tmp_path / "broken" / "checkpoint.pt")["step"] == 4 - 4 % 2
    # resume through the CLI, with the run's own config taken from the checkpoint
    assert cli_main(["train", "cs2fusion", "--out", str(tmp_path / "broken"), "--resume"]) == 0
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(tmp_path / "broken" / "checkpoint.pt")
    for name in ("backbone", "cpn"):
        for key, value in a["models"][name].items():
            assert torch.equal(value, b["models"][name][key]), f"{name}.{key}"
    assert a["optimizers"]["backbone"]["state"][0]["exp_avg_sq"].equal(b["optimizers"]["backbone"]["state"][0]["exp_avg_sq"])
    assert a["schedulers"] == b["schedulers"]


def test_bad_data_fails_before_the_first_step(tmp_path):
    data = smooth_pairs(tmp_path / "data")
    (data / "ir" / "p2.png").write_bytes(b"\x89PNG broken")
    steps = []
    with pytest.raises(ImageReadError, match="p2.png"):
        train(tiny_config(data), tmp_path / "run", on_step_end=lambda s, _: steps.append(s))
    assert steps == []
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / "ir" / "p2.png")
    with pytest.raises(Exception, match="p2.png"):
        train(tiny_config(data), tmp_path / "run")


DDP_SCRIPT = '''
import json, os, sys
import torch
from torch import nn
from contrafuse.data import PatchPairs
from contrafuse.training import Recipe, register_recipe, unwrap
from contrafuse.training.recipe import configured_pairs
from contrafuse.training.cs2fusion import Cs2FusionRecipe
from contrafuse.training.engine import load_config, train


@register_recipe
class ToyRecipe(Recipe):
    """A per-sample (mean) loss: DDP over W processes == one process with W x the batch."""
    name = "toy_mse"

    def build_models(self, cfg):
        return {"net": nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1))}

    def build_optimizers(self, models, cfg):
        opt = torch.optim.SGD(models["net"].parameters(), lr=0.05, momentum=0.9)
        return {"net": opt}, {"net": torch.optim.lr_scheduler.StepLR(opt, 3, 0.5)}

    def build_dataset(self, cfg, split):
        return PatchPairs(configured_pairs(cfg.data, split), cfg.data.patch_size)

    def training_step(self, models, optimizers, batch, step, stage):
        loss = nn.functional.mse_loss(models["net"](batch["vis"]), batch["ir"])
        optimizers["net"].zero_grad()
        loss.backward()
        optimizers["net"].step()
        return {"mse": loss.detach()}

    def export_model(self, models, cfg):
        return unwrap(models["net"]), "toy"


@register_recipe
class ProbeRecipe(Cs2FusionRecipe):
    """CS2Fusion that saves every process's weights after the last step."""
    name = "cs2fusion_probe"

    def training_step(self, models, optimizers, batch, step, stage):
        losses = super().training_step(models, optimizers, batch, step, stage)
        if step == self.cfg.train.steps - 1:
            rank = int(os.environ.get("RANK", "0"))
            state = {f"{n}.{k}": v for n in models for k, v in unwrap(models[n]).state_dict().items()}
            torch.save(state, os.path.join(OUT, f"replica{rank}.pt"))
        return losses


data, OUT, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
common = ["data.dataset=folders", f"data.ir_dir={data}/ir", f"data.vis_dir={data}/vis", "data.patch_size=16",
          "data.workers=0", "train.device=cpu", "train.steps=5", f"train.batch_size={batch}", "train.checkpoint_every=5"]
train(load_config(None, common, method="toy_mse"), os.path.join(OUT, "toy"))
if len(sys.argv) > 4:
    train(load_config(None, common, method="cs2fusion_probe"), os.path.join(OUT, "cs2"))
'''


def test_torchrun_two_processes_match_one(tmp_path):
    data = smooth_pairs(tmp_path / "data", count=5)
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, double = tmp_path / "single", tmp_path / "double"
    single.mkdir(), double.mkdir()
    subprocess.run([sys.executable, str(script), str(data), str(single), "4"], check=True, env=env, timeout=300)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(data), str(double), "2", "cs2"],
        env=env, timeout=400, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    one = load_checkpoint(single / "toy" / "checkpoint.pt")
    two = load_checkpoint(double / "toy" / "checkpoint.pt")
    assert two["world_size"] == 2 and two["sampler"]["global_batch"] == 4
    for key, value in one["models"]["net"].items():
        assert torch.allclose(value, two["models"]["net"][key], rtol=1e-5, atol=1e-6), key
    replicas = [torch.load(double / f"replica{r}.pt") for r in range(2)]
    for key, value in replicas[0].items():
        assert torch.equal(value, replicas[1][key]), key


def test_compensation_prior_target_follows_the_infrared_surplus():
    from contrafuse.losses.cs2fusion import compensation_prior_loss, compensation_prior_target

    ir = torch.tensor([[[[200.0, 10.0, 105.0]]]])
    vis = torch.tensor([[[[10.0, 200.0, 105.0]]]])
    target = compensation_prior_target(ir=ir, vis=vis)
    assert torch.allclose(target, torch.tensor([[[[1.0, 0.0, 0.5]]]]))
    assert float(compensation_prior_loss(target, ir=ir, vis=vis)) == 0.0
    assert float(compensation_prior_loss(1.0 - target, ir=ir, vis=vis)) == pytest.approx(2.0 / 3.0)
    squared = compensation_prior_target(ir=ir, vis=vis, gamma=2.0)
    assert torch.allclose(squared, torch.tensor([[[[1.0, 0.0, 0.25]]]]))
    assert float(compensation_prior_loss(squared, ir=ir, vis=vis, gamma=2.0)) == 0.0


def test_brighter_prior_chooses_the_brighter_source_smoothly():
    from contrafuse.losses.cs2fusion import compensation_prior_target

    ir = torch.tensor([[[[200.0, 10.0, 105.0, 110.0]]]])
    vis = torch.tensor([[[[10.0, 200.0, 105.0, 100.0]]]])
    target = compensation_prior_target(ir=ir, vis=vis, shape="brighter", softness=10.0)
    assert target[0, 0, 0, 0] > 0.999 and target[0, 0, 0, 1] < 0.001
    assert float(target[0, 0, 0, 2]) == pytest.approx(0.5)
    assert float(target[0, 0, 0, 3]) == pytest.approx(float(torch.sigmoid(torch.tensor(1.0))))
    with pytest.raises(ValueError, match="prior shape"):
        compensation_prior_target(ir=ir, vis=vis, shape="max")


def _backbone_loss_optimum(ir, vis, compensation, steps=300):
    from contrafuse.losses.cs2fusion import backbone_loss

    fused = ((ir + vis) / 2).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([fused], lr=2.0)
    for _ in range(steps):
        optimizer.zero_grad()
        backbone_loss(fused, ir=ir, vis=vis, compensation=compensation).total.backward()
        optimizer.step()
    return fused.detach()


def test_under_the_brighter_prior_a_night_background_keeps_the_infrared():
    """A night pair: the visible image is dark but for a lamp, the infrared shows the scene at mid
    level and a warm target. The backbone loss's pixel optimum under the "difference" prior sends
    the background towards the dark visible image; under "brighter" it keeps the infrared's."""
    from contrafuse.losses.cs2fusion import compensation_prior_target

    generator = torch.Generator().manual_seed(0)
    ir = 90.0 + 10.0 * torch.rand(1, 1, 24, 24, generator=generator)
    ir[..., 8:14, 8:14] = 220.0
    vis = 15.0 + 5.0 * torch.rand(1, 1, 24, 24, generator=generator)
    vis[..., 18:22, 2:6] = 250.0
    background = torch.ones_like(ir, dtype=torch.bool)
    background[..., 8:14, 8:14] = background[..., 18:22, 2:6] = False
    optimum = {shape: _backbone_loss_optimum(ir, vis, compensation_prior_target(ir=ir, vis=vis, gamma=2.0, shape=shape))
               for shape in ("difference", "brighter")}
    gap = {shape: float((f - ir)[background].abs().mean()) for shape, f in optimum.items()}
    assert gap["brighter"] < 10.0 < 30.0 < gap["difference"]
    assert float(optimum["brighter"][..., 19, 3]) > 200.0  # the lamp stays bright


def test_prior_steps_fit_the_compensation_map_then_hand_over_to_the_contrastive_loss(tmp_path):
    from contrafuse.losses.cs2fusion import compensation_prior_target

    cfg = tiny_config(
        smooth_pairs(tmp_path), steps=30,
        **{"loss.prior_steps": "25", "optim.lr_cpn": "1e-2", "optim.lr_backbone": "0.0", "optim.milestones": "[1.0]"},
    )
    recipe = Cs2FusionRecipe()
    recipe.configure(cfg)
    dataset = recipe.build_dataset(cfg, "train")
    batch = torch.utils.data.default_collate([dataset[(i % 4, 100 + i)] for i in range(4)])
    seed_everything(cfg.train.seed)
    models = recipe.build_models(cfg)
    optimizers, _ = recipe.build_optimizers(models, cfg)
    logged = [recipe.training_step(models, optimizers, batch, step, Stage("main", 1)) for step in range(30)]
    assert all("prior" in losses for losses in logged[:25]) and not any("prior" in losses for losses in logged[25:])
    assert float(logged[24]["prior"]) < 0.2 * float(logged[0]["prior"])
    assert all({"p_mean", "gap_vis", "gap_ir"} <= set(losses) for losses in logged)  # collapse watches
    target_mean = float(compensation_prior_target(ir=batch["ir"] * 255.0, vis=batch["vis"] * 255.0).mean())
    assert abs(float(logged[24]["p_mean"]) - target_mean) < abs(float(logged[0]["p_mean"]) - target_mean)


@pytest.mark.parametrize("weights", ["cpn", "prior"])
def test_backbone_loss_is_weighted_by_the_map_the_config_names(tmp_path, weights):
    from contrafuse.losses.cs2fusion import backbone_loss, compensation_prior_target

    cfg = tiny_config(smooth_pairs(tmp_path), steps=1, **{"loss.backbone_weights": weights, "loss.prior_shape": "brighter"})
    recipe = Cs2FusionRecipe()
    recipe.configure(cfg)
    dataset = recipe.build_dataset(cfg, "train")
    batch = torch.utils.data.default_collate([dataset[(i % 4, 100 + i)] for i in range(4)])
    seed_everything(cfg.train.seed)
    models = recipe.build_models(cfg)
    ir, vis = batch["ir"] * 255.0, batch["vis"] * 255.0
    with torch.no_grad():
        fused = models["backbone"](ir=ir, vis=vis).fused
    prior = compensation_prior_target(ir=ir, vis=vis, shape="brighter")
    under_prior = float(backbone_loss(fused, ir=ir, vis=vis, compensation=prior).intensity)
    optimizers, _ = recipe.build_optimizers(models, cfg)
    logged = recipe.training_step(models, optimizers, batch, 0, Stage("main", 1))
    assert (float(logged["intensity"]) == pytest.approx(under_prior, rel=1e-5)) == (weights == "prior")
