"""A third fusion method added the way CONTRIBUTING.md says, in this file alone: a network of a
few convolutions, its registry entry (one ``register_model`` call declaring what it can do), and
a trivial training recipe. Everything else must follow from the registry: fusing one pair and a
folder, the benchmark, ONNX export (fp32 and int8), ``contrafuse models`` and a 2-step training
run that resumes exactly. The registrations are taken back after the module's tests, so the other
test modules see only the built-in methods.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.optim import Adam
from torch.optim.lr_scheduler import LambdaLR

from conftest import require_module
from contrafuse import fuse, fuse_folders
from contrafuse.cli.main import main
from contrafuse.data import PatchPairs
from contrafuse.models import MODELS, Capabilities, Int8Recipe, create_model, list_models, register_model
from contrafuse.training.checkpoint import load_checkpoint
from contrafuse.training.engine import load_config, train
from contrafuse.training.recipe import RECIPES, Recipe, register_recipe, training_pairs, unwrap

NAME = "toy"


class ToyFusion(nn.Module):
    """The mean of the two sources plus a learned correction from three small convolutions."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.encode = nn.Conv2d(2, width, 3, padding=1)
        self.mix = nn.Conv2d(width, width, 3, padding=1)
        self.decode = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, *, ir: Tensor, vis: Tensor) -> Tensor:
        features = F.relu(self.mix(F.relu(self.encode(torch.cat([ir, vis], dim=1)))))
        return 0.5 * (ir + vis) + self.decode(features)


def toy(*, width: int = 8) -> nn.Module:
    return ToyFusion(width)


class ToyRecipe(Recipe):
    """One network, one Adam optimiser at a constant rate; the loss pulls the result towards the
    brighter source."""

    name = NAME

    def build_models(self, cfg) -> dict[str, nn.Module]:
        return {"net": create_model(NAME, weights=None)}

    def build_optimizers(self, models, cfg):
        optimizer = Adam(models["net"].parameters(), lr=1e-3)
        return {"net": optimizer}, {"net": LambdaLR(optimizer, lambda step: 1.0)}

    def build_dataset(self, cfg, split):
        return PatchPairs(training_pairs(cfg, split), cfg.data.patch_size, cfg.data.flips)

    def training_step(self, models, optimizers, batch, step, stage):
        fused = models["net"](ir=batch["ir"], vis=batch["vis"])
        loss = F.mse_loss(fused, torch.maximum(batch["ir"], batch["vis"]))
        optimizers["net"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["net"].step()
        return {"loss": loss.detach()}

    def export_model(self, models, cfg):
        model = create_model(NAME, weights=None)
        model.load_state_dict(unwrap(models["net"]).state_dict())
        return model.eval(), NAME


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The method's one registration (and its recipe's), taken back when the module is done."""
    register_model(NAME, description="toy: mean plus three convolutions (a test method)", default_weights=None,
                   capabilities=Capabilities(thread_invariant=True, recipe=NAME,
                                             int8=Int8Recipe(op_types=("Conv",), keep_float=(), why="none kept")))(toy)
    register_recipe(ToyRecipe)
    yield
    MODELS.remove(NAME)
    RECIPES.remove(NAME)
    assert NAME not in list_models()


def make_pairs(root: Path, count: int = 3, size: tuple[int, int] = (47, 63)) -> Path:
    """Aligned pairs: a warm blob on a dark infrared image, a colour ramp for the visible one."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]] / max(size)
    for folder in ("ir", "vis"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        cy, cx = rng.uniform(0.2, 0.6, 2)
        ir = (30 + 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)).astype(np.uint8)
        vis = np.stack([70 + 150 * xx, 50 + 120 * yy, 90 + 80 * xx * yy], -1).astype(np.uint8)
        Image.fromarray(ir).save(root / "ir" / f"p{index}.png")
        Image.fromarray(vis).save(root / "vis" / f"p{index}.png")
    return root


def toy_config(data: Path, steps: int = 2):
    return load_config(None, [
        "data.dataset=folders", f"data.ir_dir={data / 'ir'}", f"data.vis_dir={data / 'vis'}", "data.patch_size=16",
        "data.workers=0", f"train.steps={steps}", "train.batch_size=2", "train.device=cpu", "train.checkpoint_every=1",
        "train.log_every=1",
    ], method=NAME)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_pairs(tmp_path_factory.mktemp("toy_data"))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    """The toy's weights from a 2-step run (``contrafuse train toy``), validated on a held-out pair."""
    run = tmp_path_factory.mktemp("toy_run")
    overrides = ["data.dataset=folders", f"data.ir_dir={data / 'ir'}", f"data.vis_dir={data / 'vis'}",
                 "data.patch_size=16", "data.workers=0", "train.steps=2", "train.batch_size=2", "train.device=cpu",
                 "train.log_every=1", "validation.every=2", "validation.holdout=1", "validation.metrics=[EN, SD]"]
    assert main(["train", NAME, "--out", str(run), *(f"--set={o}" for o in overrides)]) == 0
    validations = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [line["step"] for line in validations] == [0, 2] and all(line["pairs"] == 1 for line in validations)
    assert (run / "best" / f"{NAME}.safetensors").is_file()
    return run / f"{NAME}.safetensors"


def test_the_registry_lists_it_with_its_recipe(capsys):
    assert NAME in list_models() and NAME in RECIPES
    assert main(["models", NAME]) == 0
    assert "needs --weights" in capsys.readouterr().out


def test_it_keeps_the_model_contract_on_odd_sizes():
    model = create_model(NAME, weights=None)
    with torch.inference_mode():
        out = model(ir=torch.rand(1, 1, 19, 23), vis=torch.rand(1, 1, 19, 23))
    assert out.shape == (1, 1, 19, 23) and torch.isfinite(out).all()


def test_two_steps_resume_exactly(data, tmp_path):
    cfg = toy_config(data)
    whole = train(cfg, tmp_path / "whole")

    def stop_after_the_first_step(step: int, _losses: dict) -> None:
        if step == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(toy_config(data), tmp_path / "broken", on_step_end=stop_after_the_first_step)
    resumed = train(toy_config(data), tmp_path / "broken", resume=True)
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a["step"] == b["step"] == 2
    for key, value in a["models"]["net"].items():
        assert torch.equal(value, b["models"]["net"][key]), key
    assert json.loads((tmp_path / "whole" / "log.jsonl").read_text().splitlines()[-1])["step"] == 2


def test_fuses_a_pair_and_a_folder_with_its_weights(data, trained, tmp_path, capsys):
    one = tmp_path / "one.png"
    assert main(["fuse", "--model", NAME, "--weights", str(trained), "--ir", str(data / "ir" / "p0.png"),
                 "--vis", str(data / "vis" / "p0.png"), "--out", str(one)]) == 0
    expected = fuse(ir=data / "ir" / "p0.png", vis=data / "vis" / "p0.png", model=NAME, weights=trained, device="cpu")
    np.testing.assert_array_equal(np.asarray(Image.open(one)), expected)
    report = fuse_folders(ir=data / "ir", vis=data / "vis", out=tmp_path / "out", model=NAME, weights=trained,
                          device="cpu", progress=False)
    assert report.ok and len(report.written) == 3
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "p0.png")), expected)


def test_benchmarks_beside_a_baseline(data, trained, tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--data", f"toyset={data / 'ir'},{data / 'vis'}", "--models", f"average,{NAME}={trained}",
                 "--metrics", "EN", "SD", "--out", str(out), "--no-plots"]) == 0
    values = json.loads((out / "metrics.json").read_text())["datasets"]["toyset"]["methods"]
    assert set(values) == {"average", NAME} and len(values[NAME]["images"]) == 3
    assert f"`{NAME}`" in (out / "report.md").read_text()


def test_onnx_export_equals_pytorch(trained, tmp_path):
    require_module("onnxruntime", "onnx")
    from contrafuse.export import OnnxModel, export_onnx

    path = export_onnx(NAME, tmp_path / "toy.onnx", weights=trained)
    network = create_model(NAME, weights=trained)
    ir, vis = torch.rand(2, 1, 31, 45), torch.rand(2, 1, 31, 45)
    with torch.no_grad():
        torch.testing.assert_close(OnnxModel(path)(ir=ir, vis=vis), network(ir=ir, vis=vis), atol=1e-4, rtol=0)


def test_int8_export_uses_its_declared_recipe(data, trained, tmp_path):
    onnx = require_module("onnx", "onnx")
    require_module("onnxruntime", "onnx")
    from contrafuse.export import OnnxModel, export_onnx

    path = export_onnx(NAME, tmp_path / "toy_int8.onnx", weights=trained, precision="int8",
                       calibration=f"{data / 'ir'},{data / 'vis'}", calibration_pairs=2)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["contrafuse_model"] == NAME and meta["int8_quantized_ops"] == "Conv"
    assert OnnxModel(path).precision == "int8"
