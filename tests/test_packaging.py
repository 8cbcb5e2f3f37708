"""An installed package (not the checkout) trains from a shipped config found by name."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _copy_sources(target: Path) -> Path:
    """What ``pip install .`` reads, copied so that the build leaves nothing in the checkout."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, target / name)
    shutil.copytree(REPO / "src", target / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


def _roadscene_tree(root: Path, count: int = 3, size: int = 40) -> Path:
    """A tiny tree in the roadscene layout: ir/, vis/ and the CDDFuse test list."""
    rng = np.random.default_rng(0)
    for sub in ("ir", "vis"):
        (root / "roadscene" / sub).mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(root / "roadscene" / "ir" / f"{i:03d}.jpg")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "roadscene" / "vis" / f"{i:03d}.jpg")
    (root / "roadscene" / "cddfuse_test50.txt").write_text("")
    return root


def _build_leftovers() -> set[Path]:
    return {*REPO.glob("src/*.egg-info"), *REPO.glob("build")}


def test_installed_package_trains_the_smoke_config_by_name(tmp_path: Path):
    before = _build_leftovers()  # an editable install of the checkout has its own egg-info
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(_copy_sources(tmp_path / "sources"))],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    assert (site / "contrafuse" / "configs" / "cs2fusion_smoke.yaml").is_file()
    assert (site / "contrafuse" / "weights" / "cs2fusion.safetensors").is_file()

    data = _roadscene_tree(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CONTRAFUSE_DATA")}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    where = subprocess.run([sys.executable, "-c", "import contrafuse; print(contrafuse.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    train = subprocess.run(
        [sys.executable, str(site / "bin" / "contrafuse"), "train", "cs2fusion", "--config", "cs2fusion_smoke",
         "--data", str(data), "--out", "run", "--set", "train.steps=2", "--set", "train.checkpoint_every=2"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert (elsewhere / "run" / "cs2fusion.safetensors").is_file()
    log = [json.loads(line) for line in (elsewhere / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2
    assert _build_leftovers() == before
