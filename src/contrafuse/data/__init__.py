"""Training and evaluation data: named paired-folder datasets, splits, random patches, occlusion.

Items hold the infrared/functional image as ``ir`` and the visible/MRI image as ``vis``, both
BT.601 luma as float32 in [0, 1]; each training recipe rescales (CS2Fusion: x 255).
"""
from .datasets import (
    DATA_ENV,
    PUBLISHED_LAYOUTS,
    DataRootError,
    DatasetError,
    LayoutError,
    NamedDataset,
    PairFiles,
    PublishedLayout,
    custom_pairs,
    dataset_info,
    dataset_pairs,
    folder_modalities,
    folder_pairs,
    list_datasets,
    read_manifest,
    resolve_data_root,
)
from .occlusion import OcclusionPolicy, occlude
from .patches import PatchPairs, load_pair, load_pairs
from .selection import choose_pairs

__all__ = [
    "DATA_ENV",
    "DataRootError",
    "DatasetError",
    "LayoutError",
    "NamedDataset",
    "PUBLISHED_LAYOUTS",
    "PublishedLayout",
    "OcclusionPolicy",
    "PairFiles",
    "PatchPairs",
    "choose_pairs",
    "custom_pairs",
    "dataset_info",
    "dataset_pairs",
    "folder_modalities",
    "folder_pairs",
    "list_datasets",
    "load_pair",
    "load_pairs",
    "occlude",
    "read_manifest",
    "resolve_data_root",
]
