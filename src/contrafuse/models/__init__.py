"""Fusion networks, classical rules, the model registry and weight loading."""
from .registry import ModelInfo, create_model, default_weights_path, list_models, model_info, register_model

# The model `contrafuse fuse` uses when none is named.
DEFAULT_MODEL = "cs2fusion"

__all__ = [
    "DEFAULT_MODEL",
    "ModelInfo",
    "create_model",
    "default_weights_path",
    "list_models",
    "model_info",
    "register_model",
]
