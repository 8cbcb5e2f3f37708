"""The validation score that picks a run's best weights: mean rank against a panel, or gain."""
from __future__ import annotations

import math

import pytest
import torch

from contrafuse.training.engine import load_config
from contrafuse.training.validation import Validator


def _validator(panel: list[str]) -> Validator:
    cfg = load_config("coconet_smoke", [f"validation.panel=[{', '.join(panel)}]", "validation.score_metrics=[EN, SD]"],
                      method="coconet")
    return Validator(cfg, [], out_dir=None, device=torch.device("cpu"))


def test_score_is_the_mean_rank_among_the_panel() -> None:
    validator = _validator(["average", "laplacian"])
    validator.panel = {"average": {"EN": 5.0, "SD": 5.0}, "laplacian": {"EN": 7.0, "SD": 7.0}}
    # EN: laplacian 1, current 2, average 3; SD: current 1, laplacian 2, average 3
    assert validator.score({"EN": 6.0, "SD": 8.0}) == pytest.approx(1.5)
    assert validator.score({"EN": 9.0, "SD": 9.0}) == pytest.approx(1.0)
    assert validator.score({"EN": 1.0, "SD": 1.0}) == pytest.approx(3.0)


def test_without_a_panel_the_score_is_minus_the_mean_relative_gain_since_the_first_validation() -> None:
    validator = _validator([])
    assert validator.score({"EN": 5.0, "SD": 10.0}) == 0.0  # the first validation anchors the scale
    assert validator.score({"EN": 5.5, "SD": 11.0}) == pytest.approx(-0.1)  # both 10 % better: lower is better
    assert validator.score({"EN": 4.5, "SD": 10.0}) == pytest.approx(0.05)
    assert math.isnan(validator.score({"EN": math.nan, "SD": math.nan}))
