"""The researcher's training workflow: shipped configs by name, fine-tuning, extending, validation, run-folder safety."""
from __future__ import annotations

import pytest

from contrafuse.training import ConfigError
from contrafuse.training.config import find_config, shipped_configs
from contrafuse.training.engine import load_config


def test_shipped_configs_are_found_by_name_and_by_checkout_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert {"cs2fusion_smoke", "cs2fusion_roadscene", "coconet_smoke", "coconet_roadscene", "coconet_medical"} <= set(shipped_configs())
    for spec in ("cs2fusion_smoke", "cs2fusion_smoke.yaml", "configs/cs2fusion_smoke.yaml"):
        assert find_config(spec) == shipped_configs()["cs2fusion_smoke"]
    assert load_config("cs2fusion_smoke").train.steps == 20
    mine = tmp_path / "cs2fusion_smoke.yaml"  # a file of that name here wins over the shipped one
    mine.write_text("method: cs2fusion\ntrain:\n  steps: 3\n")
    assert load_config("cs2fusion_smoke.yaml").train.steps == 3
    with pytest.raises(ConfigError, match=r"nosuch: config file not found.*cs2fusion_smoke"):
        load_config("nosuch")
    with pytest.raises(ConfigError, match="not found"):
        find_config("elsewhere/cs2fusion_smoke.yaml")


# -- helpers -------------------------------------------------------------------------------------

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from contrafuse import metrics
from contrafuse.cli.main import main
from contrafuse.io import read_image
from contrafuse.models import create_model, default_weights_path
from contrafuse.models.weights import read_safetensors
from contrafuse.training.checkpoint import CheckpointError, load_checkpoint
from contrafuse.training.engine import train


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors run faster on one thread, the more so on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def user_folder(root: Path, count: int = 4, size: int = 48, seed: int = 7) -> Path:
    """A user's own sensor folder: ir/ (gray) and vis/ (colour), warm blobs on textured scenes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for sub in ("ir", "vis"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cy, cx = rng.uniform(0.25, 0.75, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)
        ir = np.clip(50 + 180 * blob + rng.normal(0, 4, (size, size)), 0, 255).astype(np.uint8)
        texture = rng.random((size, size)) * 60
        vis = np.stack([90 + 100 * xx + texture, 70 + 90 * yy + texture, 100 + texture], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(ir).save(root / "ir" / f"s{i}.png")
        Image.fromarray(vis).save(root / "vis" / f"s{i}.png")
    return root


def folder_overrides(data: Path, steps: int, **extra: object) -> list[str]:
    """``--set`` values for a tiny CS2Fusion run on ``data`` (CPU, 16-px patches, batch 2)."""
    values = {"data.dataset": "folders", "data.ir_dir": data / "ir", "data.vis_dir": data / "vis", "data.patch_size": 16,
              "data.workers": 0, "train.steps": steps, "train.batch_size": 2, "train.device": "cpu",
              "train.checkpoint_every": 2, "train.log_every": 1, "optim.milestones": "[0.5]", **extra}
    return [f"{k}={v}" for k, v in values.items()]


def sets(overrides: list[str]) -> list[str]:
    """``--set`` flags for each override."""
    return [flag for value in overrides for flag in ("--set", value)]


def cli(*args: str) -> int:
    return main(["train", "cs2fusion", *args])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its content hash: what 'nothing changed' compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def log_steps(run: Path, name: str = "log.jsonl") -> list[int]:
    return [json.loads(line)["step"] for line in (run / name).read_text().splitlines()]


# -- fine-tuning with validation -----------------------------------------------------------------

class RecordingWriter:
    """Stands in for TensorBoard's SummaryWriter (the extra is optional)."""

    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.images: list[tuple[str, tuple, int]] = []

    def add_scalar(self, key, value, step):
        self.scalars.append((key, value, step))

    def add_image(self, key, image, step, dataformats="CHW"):
        assert dataformats == "HWC" and image.ndim == 3 and image.shape[2] == 3
        self.images.append((key, image.shape, step))

    def close(self):
        pass


def test_finetune_from_shipped_weights_validates_on_held_out_pairs(tmp_path, monkeypatch, capsys):
    import contrafuse.training.runlog as runlog

    writer = RecordingWriter()
    monkeypatch.setattr(runlog, "tensorboard_writer", lambda folder: writer)
    data = user_folder(tmp_path / "mine")
    run = tmp_path / "run"
    code = cli("--config", "cs2fusion_smoke", "--init", "default", "--out", str(run),
               *sets(folder_overrides(data, 2, **{"validation.every": 2, "validation.holdout": 1,
                                                  "validation.metrics": "[EN, SD, MI]", "train.tensorboard": "true"})))
    assert code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 2]  # the starting weights, then every 2 steps
    assert all(line["pairs"] == 1 and line["failed"] == 0 and {"EN", "SD", "MI"} <= set(line) for line in lines)
    # step 0 scores the shipped weights themselves on the held-out pair (the last name, s3)
    shipped = create_model("cs2fusion")
    from contrafuse.fusion import FuseOptions, fuse_arrays

    fused = fuse_arrays(shipped, ir=read_image(data / "ir" / "s3.png"), vis=read_image(data / "vis" / "s3.png"),
                        options=FuseOptions(color="gray"))
    expected = metrics.compute(fused, ir=data / "ir" / "s3.png", vis=data / "vis" / "s3.png", names=["EN", "SD", "MI"])
    assert lines[0]["EN"] == pytest.approx(expected["EN"], rel=1e-12) and lines[0]["MI"] == pytest.approx(expected["MI"], rel=1e-12)
    for step in (0, 2):
        grid = np.asarray(Image.open(run / "validation" / f"step_{step:06d}.png"))
        assert grid.shape[1] == 3 * 256 + 2 * 4 and grid.shape[0] > 256  # IR | VIS | fused, one sample row
    assert (run / "validation" / "fused" / "s3.png").is_file()
    assert {(k, s) for k, _, s in writer.scalars if k.startswith("val/")} >= {("val/EN", 0), ("val/MI", 2)}
    assert [(k, s) for k, _, s in writer.images] == [("val/samples", 0), ("val/samples", 2)]
    _, metadata = read_safetensors(run / "cs2fusion.safetensors")
    init = json.loads(metadata["init"])
    assert init["sha256"] == hashlib.sha256(default_weights_path("cs2fusion").read_bytes()).hexdigest()
    assert json.loads(metadata["data"])["names"] == ["s0", "s1", "s2"]  # s3 was held out of training


def test_backbone_delay_holds_the_shipped_backbone_while_the_cpn_fits_its_prior(tmp_path, capsys):
    data = user_folder(tmp_path / "mine")
    shipped = create_model("cs2fusion").state_dict()
    unchanged = {}
    for steps in (2, 3):
        run = tmp_path / f"run{steps}"
        code = cli("--config", "cs2fusion_smoke", "--init", "default", "--out", str(run),
                   *sets(folder_overrides(data, steps, **{"optim.backbone_delay_steps": 2, "optim.warmup_steps": 0})))
        assert code == 0, capsys.readouterr().err
        after, _ = read_safetensors(run / "cs2fusion.safetensors")
        assert set(after) == set(shipped)
        unchanged[steps] = all(torch.equal(after[k], shipped[k]) for k in shipped)
    assert unchanged == {2: True, 3: False}  # held for the first two steps, learning from the third


def test_init_with_weights_of_another_model_is_refused(tmp_path, capsys):
    data = user_folder(tmp_path / "mine", count=2)
    code = cli("--init", str(default_weights_path("coconet")), "--out", str(tmp_path / "run"),
               *sets(folder_overrides(data, 2)))
    err = capsys.readouterr().err
    assert code == 2 and "weights are for model 'coconet', not 'cs2fusion'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, message", [
    ({"validation.every": 2}, "nothing to validate on"),
    ({"validation.every": 2, "validation.split": "test"}, "validation.split needs a named data.dataset"),
    ({"validation.every": 2, "validation.ir_dir": "IR", "validation.vis_dir": "VIS"}, "are also training pairs"),
])
def test_validation_settings_are_checked_before_the_run(tmp_path, capsys, extra, message):
    data = user_folder(tmp_path / "mine", count=2)
    extra = {k: str(v).replace("IR", str(data / "ir")).replace("VIS", str(data / "vis")) for k, v in extra.items()}
    code = cli("--out", str(tmp_path / "run"), *sets(folder_overrides(data, 2, **extra)))
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_ctrl_c_names_the_last_checkpoint_and_the_command_that_resumes(tmp_path, capsys, monkeypatch):
    from contrafuse.training.cs2fusion import Cs2FusionRecipe

    data = user_folder(tmp_path / "mine", count=2)
    run = tmp_path / "run"
    real_step = Cs2FusionRecipe.training_step

    def ctrl_c_at_step_3(self, models, optimizers, batch, step, stage):
        if step == 3:  # the checkpoint of step 2 is written (checkpoint_every 2)
            raise KeyboardInterrupt
        return real_step(self, models, optimizers, batch, step, stage)

    monkeypatch.setattr(Cs2FusionRecipe, "training_step", ctrl_c_at_step_3)
    assert cli("--out", str(run), *sets(folder_overrides(data, 4))) == 130
    err = capsys.readouterr().err
    resume = f"contrafuse train cs2fusion --out {run} --resume"
    assert f"contrafuse: interrupted: the last checkpoint in {run} is at step 2; continue with: {resume}" in err
    monkeypatch.setattr(Cs2FusionRecipe, "training_step", real_step)
    assert main(resume.split()[1:]) == 0, capsys.readouterr().err
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 4 and (run / "cs2fusion.safetensors").is_file()


# -- extending a finished run; resume keeps the log unique ---------------------------------------

class Interrupt(Exception):
    pass


def test_finished_run_extends_with_resume_like_a_run_planned_that_way(tmp_path, capsys):
    data = user_folder(tmp_path / "mine")
    held_out = user_folder(tmp_path / "held_out", count=1, seed=9)
    validation = {"validation.every": 2, "validation.ir_dir": held_out / "ir", "validation.vis_dir": held_out / "vis",
                  "validation.metrics": "[EN]", "validation.samples": 1}
    # the reference: 4 steps from the start, the lr schedule planned for 2 (x0.1 at step 1), no validation
    whole = train(load_config(None, folder_overrides(data, 4, **{"train.schedule_steps": 2}), method="cs2fusion"),
                  tmp_path / "whole")
    run = tmp_path / "run"
    assert cli("--out", str(run), *sets(folder_overrides(data, 2, **validation))) == 0  # a finished 2-step run

    def kill_after_step_3(step: int, _losses: dict) -> None:
        if step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):  # extend it, and lose step 3 to a kill (the last checkpoint is at 2)
        cfg = load_config(None, folder_overrides(data, 4, **validation), method="cs2fusion")
        train(cfg, run, resume=True, on_step_end=kill_after_step_3)
    assert log_steps(run)[-1] == 3
    assert cli("--out", str(run), "--resume", "--set", "train.steps=4") == 0, capsys.readouterr().err
    assert log_steps(run) == [1, 2, 3, 4]  # no step twice
    assert log_steps(run, "validation.jsonl") == [0, 2, 4]
    final, reference = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(whole.checkpoint)
    assert final["step"] == 4 and final["config"]["train"]["schedule_steps"] == 2
    for name in ("backbone", "cpn"):  # validation moved no random number: bit-identical to the reference
        for key, value in reference["models"][name].items():
            assert torch.equal(value, final["models"][name][key]), f"{name}.{key}"
    lrs = [json.loads(line)["lr/backbone"] for line in (run / "log.jsonl").read_text().splitlines()]
    reference_lrs = [json.loads(line)["lr/backbone"] for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert lrs == reference_lrs == pytest.approx([2e-4] * 4)  # the extra steps run at the schedule's final rate
    _, metadata = read_safetensors(run / "cs2fusion.safetensors")
    assert metadata["steps"] == "4"
    with pytest.raises(CheckpointError, match="shorten"):
        train(load_config(None, folder_overrides(data, 3), method="cs2fusion"), run, resume=True)


# -- the run folder is protected like any output -------------------------------------------------

def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(tmp_path, capsys):
    data = user_folder(tmp_path / "mine", count=2)
    run = tmp_path / "run"
    assert cli("--out", str(run), *sets(folder_overrides(data, 2))) == 0
    before = snapshot(run)
    capsys.readouterr()
    assert cli("--out", str(run), *sets(folder_overrides(data, 2))) == 2
    err = capsys.readouterr().err
    assert f"{run}: holds a training run (checkpoint.pt, cs2fusion.safetensors, log.jsonl)" in err and "--resume" in err
    assert err.count("error:") == 1 and "Traceback" not in err and snapshot(run) == before
    assert cli("--out", str(run), "--resume", "--overwrite", *sets(folder_overrides(data, 2))) == 2
    assert "give one of them" in capsys.readouterr().err and snapshot(run) == before
    assert cli("--out", str(run), "--overwrite", *sets(folder_overrides(data, 3))) == 0
    assert log_steps(run) == [1, 2, 3]  # started over: the old lines are gone
    assert not (run / ".contrafuse-train.lock").exists()


def test_two_runs_never_share_a_folder(tmp_path, capsys):
    data = user_folder(tmp_path / "mine", count=2)
    run = tmp_path / "run"
    run.mkdir()
    (run / ".contrafuse-train.lock").write_text(json.dumps({"pid": os.getpid(), "host": __import__("socket").gethostname()}))
    assert cli("--out", str(run), *sets(folder_overrides(data, 2))) == 2
    err = capsys.readouterr().err
    assert f"another training process (pid {os.getpid()}" in err and not (run / "checkpoint.pt").exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / ".contrafuse-train.lock").write_text(json.dumps({"pid": int(gone.stdout), "host": __import__("socket").gethostname()}))
    assert cli("--out", str(run), *sets(folder_overrides(data, 2))) == 0  # a stale lock is taken over
    assert not (run / ".contrafuse-train.lock").exists()


@pytest.mark.parametrize("setting, value, rule", [
    ("optim.lr_backbone", "-1e-3", "a finite number >= 0"),
    ("optim.lr_cpn", "nan", "a finite number >= 0"),
    ("train.batch_size", "0", ">= 1"),
    ("data.patch_size", "-16", ">= 1"),
    ("train.checkpoint_every", "0", ">= 1"),
    ("train.log_every", "0", ">= 1"),
    ("train.steps", "-1", ">= 0"),
    ("optim.betas", "[0.9, 1.5]", "two numbers in [0, 1)"),
    ("validation.every", "-2", ">= 0"),
])
def test_out_of_range_values_are_one_clear_error(tmp_path, capsys, setting, value, rule):
    data = user_folder(tmp_path / "mine", count=2)
    code = cli("--out", str(tmp_path / "run"), *sets(folder_overrides(data, 2) + [f"{setting}={value}"]))
    err = capsys.readouterr().err
    assert code == 2 and f"{setting} must be {rule}" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_coconet_stage_lengths_are_checked(tmp_path, capsys):
    code = main(["train", "coconet", "--config", "coconet_smoke", "--out", str(tmp_path / "run"),
                 "--set", "stages.base_steps=-2", "--set", "stages.contrastive_steps=6"])
    err = capsys.readouterr().err
    assert code == 2 and "stages.base_steps (-2)" in err and "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind, message", [
    ("garbage", "not a readable training checkpoint"),
    ("state_dict", "not a contrafuse training checkpoint (missing method, step, config"),
    ("other_method", "is a 'coconet' run, not 'cs2fusion'"),
])
def test_foreign_or_corrupt_checkpoint_is_refused_on_resume(tmp_path, capsys, kind, message):
    run = tmp_path / "run"
    run.mkdir()
    if kind == "garbage":
        (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    elif kind == "state_dict":
        torch.save({"conv.weight": torch.zeros(3)}, run / "checkpoint.pt")
    else:
        torch.save({"method": "coconet", "step": 2, "config": {"method": "coconet"}, "models": {}, "optimizers": {},
                    "schedulers": {}, "rng": [], "sampler": {"global_batch": 2}, "world_size": 1}, run / "checkpoint.pt")
    before = snapshot(run)
    assert cli("--out", str(run), "--resume") == 2
    err = capsys.readouterr().err
    assert f"{run / 'checkpoint.pt'}: " in err and message in err and "Traceback" not in err
    assert snapshot(run) == before


def test_medical_model_card_and_readme_warn_about_the_harvard_split():
    card = (default_weights_path("coconet-medical").with_suffix(".md")).read_text()
    assert "do not compare these weights with published Harvard numbers" in card
    assert "`harvard:train`" in card and "`harvard:test`" in card and "5 + 10 + 18 = 33 pairs" in card
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "compare it on `harvard:test` only" in readme


def test_validation_leaves_every_random_generator_as_it_found_it(tmp_path):
    import random

    from contrafuse.io import PairFiles
    from contrafuse.training.validation import Validator

    data = user_folder(tmp_path / "mine", count=1)
    cfg = load_config(None, folder_overrides(data, 2, **{"validation.metrics": "[EN]"}), method="cs2fusion")
    validator = Validator(cfg, [PairFiles("s0", data / "ir" / "s0.png", data / "vis" / "s0.png")], tmp_path / "run",
                          torch.device("cpu"))
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    result = validator.run(lambda: create_model("cs2fusion", weights=None), step=3)  # building draws random weights
    assert result.scored == 1 and (tmp_path / "run" / "validation" / "step_000003.png").is_file()
    assert torch.equal(torch.get_rng_state(), before[0]) and np.array_equal(np.random.get_state()[1], before[1])
    assert random.getstate() == before[2]
