"""The built-in models, declared without importing their networks.

``contrafuse models`` and ``--help`` read these entries; the module named beside each one
registers its builder and capabilities (``register_model(name, capabilities=...)``) when a model
is first built or asked for what it can do. A new built-in model adds one line here.
"""
from __future__ import annotations

from .registry import declare_model

_PACKAGE = __package__

declare_model("average", module=f"{_PACKAGE}.classical", description="pixel-wise mean of the two sources",
              needs_weights=False, task="any")
declare_model("max", module=f"{_PACKAGE}.classical", description="pixel-wise maximum of the two sources",
              needs_weights=False, task="any")
declare_model("laplacian", module=f"{_PACKAGE}.classical",
              description="Laplacian pyramid, max-abs detail, averaged base (5 levels)", needs_weights=False, task="any")
declare_model("coconet", module=f"{_PACKAGE}.coconet",
              description="CoCoNet (Liu et al., IJCV 2024), infrared-visible; our weights (random-feature VGG unless noted)",
              default_weights="coconet.safetensors")
declare_model("coconet-medical", module=f"{_PACKAGE}.coconet",
              description="CoCoNet retrained for medical pairs (--ir CT/PET/SPECT, --vis MRI); our weights",
              default_weights="coconet-medical.safetensors", task="medical")
declare_model("cs2fusion", module=f"{_PACKAGE}.cs2fusion",
              description="CS2Fusion backbone (Wang et al. 2024), our weights trained on the RoadScene training split",
              default_weights="cs2fusion.safetensors")
