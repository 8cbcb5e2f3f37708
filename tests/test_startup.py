"""Start-up: light commands and every ``--help`` import no network code (torch and friends).

Counted as the modules a fresh interpreter holds after the command, not as wall time (this
machine is shared); ``benchmarks/startup.py`` prints the times.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "kornia", "onnxruntime", "matplotlib", "safetensors", "av")
PROBE = """
import json, sys
from contrafuse.cli.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def _run(*argv: str) -> tuple[int, set[str]]:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["status"], {name.split(".")[0] for name in report["modules"]}


@pytest.mark.parametrize("argv", [["models"], ["--help"], ["fuse", "--help"], ["align", "--help"],
                                  ["export", "--help"], ["convert", "--help"], ["eval", "--help"], ["bench", "--help"]])
def test_light_commands_do_not_import_torch(argv: list[str]) -> None:
    status, modules = _run(*argv)
    assert status in (0, None)
    assert not modules & set(HEAVY), f"contrafuse {' '.join(argv)} imported {sorted(modules & set(HEAVY))}"


def test_listing_models_does_not_import_scipy_or_opencv() -> None:
    _, modules = _run("models")
    assert not modules & {"scipy", "cv2"}


def test_declared_models_match_what_their_modules_register() -> None:
    """The catalogue lists every built-in model, and each resolves to the builder its module registers."""
    listed = subprocess.run([sys.executable, "-c", "from contrafuse.models import list_models; print(list_models())"],
                            capture_output=True, text=True, check=True).stdout.strip()
    from contrafuse.models import MODELS, list_models, model_info

    for name in list_models():
        light, full = model_info(name, load=False), model_info(name)
        assert full.builder is not None and callable(full.builder)
        assert (light.description, light.task, light.default_weights) == (full.description, full.task,
                                                                          full.default_weights)
    builtin_modules = {model_info(name).module for name in list_models() if model_info(name).module}
    registered_by_builtins = {name for name, info in MODELS.items()
                              if info.builder is not None and info.builder.__module__ in builtin_modules}
    assert registered_by_builtins <= set(eval(listed)), "a built-in module registers a model the catalogue omits"
