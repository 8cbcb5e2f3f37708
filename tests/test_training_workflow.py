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
