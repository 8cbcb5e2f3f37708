"""Fusion networks, classical rules, the model registry and weight loading."""
from .capabilities import Capabilities, Int8Recipe
from .registry import (
    MODELS, ModelInfo, capabilities_of, create_model, default_weights_path, list_models, model_info, register_model,
)

# The model `contrafuse fuse` uses when none is named.
DEFAULT_MODEL = "cs2fusion"

__all__ = [
    "Capabilities",
    "DEFAULT_MODEL",
    "Int8Recipe",
    "MODELS",
    "ModelInfo",
    "capabilities_of",
    "create_model",
    "default_weights_path",
    "list_models",
    "model_info",
    "register_model",
]
