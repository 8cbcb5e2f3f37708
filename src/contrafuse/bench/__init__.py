"""Benchmarking: fuse named datasets with several models, score them beside published results,
and write metrics.csv/json, report.md, report.html and figures.

    >>> from contrafuse.bench import parse_models, resolve_dataset, run_bench, write_report
    >>> bench = run_bench([resolve_dataset("tno42")], parse_models(["average,laplacian"]), "out/")
    >>> write_report(bench, "out/")
"""
import importlib
from typing import Any

# Imported on first use, so that `contrafuse bench --help` does not load torch.
_LAZY = {
    "InsetChoice": "grid", "parse_insets": "grid",
    "ReportFiles": "report", "software_versions": "report", "write_report": "report",
    "BenchResult": "runner", "MethodResult": "runner", "Timing": "runner", "run_bench": "runner",
    "BenchDataset": "specs", "BenchError": "specs", "Method": "specs", "apply_model_options": "specs", "check_unique": "specs", "parse_models": "specs",
    "parse_results": "specs", "parse_weights": "specs", "resolve_dataset": "specs",
    "DatasetSummary": "summary", "summarise": "summary",
}

__all__ = [  # noqa: F822 (the names are served by __getattr__)
    "BenchDataset",
    "BenchError",
    "BenchResult",
    "DatasetSummary",
    "InsetChoice",
    "Method",
    "MethodResult",
    "ReportFiles",
    "Timing",
    "apply_model_options",
    "check_unique",
    "parse_insets",
    "parse_models",
    "parse_results",
    "parse_weights",
    "resolve_dataset",
    "run_bench",
    "software_versions",
    "summarise",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
