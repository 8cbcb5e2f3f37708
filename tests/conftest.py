"""Shared pytest fixtures. Keep this file generic: other test modules add their fixtures here.

``shared_dir``: the folder of shared reference data (golden values, test images). It is
``$CONTRAFUSE_SHARED`` if set, else the ``shared`` folder beside the repository. When it is
missing, tests that need it are skipped locally but FAIL under CI (``CI`` set), so a CI run
can never pass by silently skipping the reference checks.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def locate_shared_dir() -> Path:
    """``$CONTRAFUSE_SHARED`` or ``<repo>/../shared``; not checked for existence."""
    env = os.environ.get("CONTRAFUSE_SHARED")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared"


def require_path(path: Path, what: str) -> Path:
    """Return ``path`` if it exists; else fail under CI, skip otherwise."""
    if path.exists():
        return path
    message = f"{what} not found at {path} (set CONTRAFUSE_SHARED)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_module(module: str, extra: str):
    """Import an optional dependency: FAIL under CI when missing (never pass by skipping), skip elsewhere."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} not installed: pip install 'contrafuse[{extra}]'"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder (see module docstring)."""
    return require_path(locate_shared_dir(), "shared data folder")


CHROMIUM_INSTALL = "apt-get update && apt-get install -y chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def require_chromium() -> str:
    """Path of the system's headless-capable Chromium (never a downloaded one): FAIL under CI
    when missing, skip elsewhere."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = f"chromium not found; install it with: {CHROMIUM_INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def onnx_cache_folder(tmp_path_factory) -> Path:
    """Cached ONNX exports of the default backend go to one folder per test session, never ~/.cache
    (the environment variable also reaches the CLI subprocesses)."""
    folder = tmp_path_factory.mktemp("contrafuse-cache")
    previous = os.environ.get("CONTRAFUSE_CACHE")
    os.environ["CONTRAFUSE_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("CONTRAFUSE_CACHE", None)
    else:
        os.environ["CONTRAFUSE_CACHE"] = previous
