"""Training: one engine (loop, DDP, checkpoints, logging, resume) driven by a recipe per method.

    >>> from contrafuse.training import train, load_config
    >>> cfg = load_config("cs2fusion_smoke", overrides=["train.steps=10"])
    >>> result = train(cfg, out_dir="runs/smoke")
"""
from .config import ConfigError, DataConfig, LoopConfig, TrainConfig
from .recipe import Recipe, Stage, get_recipe, list_recipes, register_recipe, unwrap

__all__ = [
    "ConfigError",
    "DataConfig",
    "LoopConfig",
    "Recipe",
    "Stage",
    "TrainConfig",
    "get_recipe",
    "list_recipes",
    "register_recipe",
    "unwrap",
]
