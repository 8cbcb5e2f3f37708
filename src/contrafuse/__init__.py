"""contrafuse: multi-modality image fusion (infrared-visible and medical).

    >>> import contrafuse
    >>> fused = contrafuse.fuse("ir.png", "vis.png", model="cs2fusion")
"""
from .fusion import fuse, fuse_folders
from .io import read_image, write_image
from .models import DEFAULT_MODEL, create_model, list_models

__version__ = "0.1.0"

__all__ = ["DEFAULT_MODEL", "create_model", "fuse", "fuse_folders", "list_models", "read_image", "write_image", "__version__"]
