"""The command line and the shipped default model, end to end on the example pair."""
from __future__ import annotations

from pathlib import Path

import pytest

from contrafuse.cli.main import build_parser, main
from contrafuse.training.command import overrides_of
from contrafuse.color import rgb_to_luma
from contrafuse.io import read_image
from contrafuse.models import DEFAULT_MODEL, default_weights_path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_models_lists_every_model_and_marks_the_default(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines()]
    for name in ("average", "max", "laplacian", "cs2fusion", "coconet", "coconet-medical"):
        assert name in listed
    assert "(default)" in out.splitlines()[[n.split()[0] for n in out.splitlines()].index(DEFAULT_MODEL)]


@pytest.mark.parametrize("name", ["cs2fusion", "coconet", "coconet-medical"])
def test_trained_weights_ship_with_a_model_card(name):
    weights = default_weights_path(name)
    assert weights is not None and weights.stat().st_size > 100_000
    card = weights.with_suffix(".md").read_text()
    for heading in ("## Training", "## Measured quality", "commit", "hardware"):
        assert heading in card


def test_readme_main_job_fuses_the_example_pair_with_the_default_model(tmp_path):
    out = tmp_path / "fused.png"
    assert main(["fuse", "--ir", str(EXAMPLES / "ir.png"), "--vis", str(EXAMPLES / "vis.png"), "--out", str(out)]) == 0
    fused, vis = read_image(out), read_image(EXAMPLES / "vis.png")
    assert fused.shape == vis.shape  # colour kept
    doorway = (slice(112, 145), slice(116, 130))  # the warm person, invisible in the visible image
    assert rgb_to_luma(fused)[doorway].mean() > rgb_to_luma(vis)[doorway].mean() + 40
    house = (slice(45, 65), slice(35, 105))  # daylight texture comes from the visible image
    assert abs(rgb_to_luma(fused)[house].std() - rgb_to_luma(vis)[house].std()) < 0.5 * rgb_to_luma(vis)[house].std()


def test_coconet_keeps_the_warm_person_and_the_visible_texture_of_the_example_pair(tmp_path):
    out = tmp_path / "fused.png"
    assert main(["fuse", "--ir", str(EXAMPLES / "ir.png"), "--vis", str(EXAMPLES / "vis.png"), "--out", str(out),
                 "--model", "coconet"]) == 0
    fused, vis = rgb_to_luma(read_image(out)), rgb_to_luma(read_image(EXAMPLES / "vis.png"))
    doorway = (slice(112, 145), slice(116, 130))
    assert fused[doorway].mean() > vis[doorway].mean() + 40
    house = (slice(45, 65), slice(35, 105))  # flat in the infrared image: all its texture is the visible one's
    assert fused[house].std() >= 0.5 * vis[house].std()


def test_train_vgg_weights_flag_is_a_config_override(tmp_path):
    args = build_parser().parse_args(["train", "coconet", "--vgg-weights", str(tmp_path / "vgg19.pth"), "--set", "train.steps=3"])
    assert overrides_of(args) == [f"vgg.weights={tmp_path / 'vgg19.pth'}", "train.steps=3"]


def test_errors_exit_with_status_2_and_a_message(tmp_path, capsys):
    assert main(["fuse", "--ir", str(tmp_path / "missing.png"), "--vis", str(EXAMPLES / "vis.png"), "--out", str(tmp_path / "o.png")]) == 2
    assert "missing.png: file not found" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
