"""Benchmarking: fuse named datasets with several models, score them beside published results,
and write metrics.csv/json, report.md, report.html and figures.

    >>> from contrafuse.bench import parse_models, resolve_dataset, run_bench, write_report
    >>> bench = run_bench([resolve_dataset("tno42")], parse_models(["average,laplacian"]), "out/")
    >>> write_report(bench, "out/")
"""
from .grid import InsetChoice, parse_insets
from .report import ReportFiles, software_versions, write_report
from .runner import BenchResult, MethodResult, Timing, run_bench
from .specs import BenchDataset, BenchError, Method, apply_model_options, check_unique, parse_models, parse_results, parse_weights, resolve_dataset
from .summary import DatasetSummary, summarise

__all__ = [
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
