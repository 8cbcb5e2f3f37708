"""The run folder, protected like any output: an existing run is never overwritten by accident,
two processes never train into one folder, and a resumed run's logs do not repeat steps.

* A folder that holds a run (checkpoint, logs, validation, exported weights) is refused
  unless the run is resumed (``--resume``) or started over (``--overwrite``, which removes
  the run's checkpoint, logs, validation and TensorBoard files; exported weights are replaced
  when the new run ends).
* While a run trains, ``.contrafuse-train.lock`` (created atomically, holding the process id
  and host) keeps a second run out; a lock whose process is gone on this host is taken over.
* On resume, ``log.jsonl`` keeps the lines up to the checkpoint's step (rewritten atomically).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from ..atomic import write_text
from ..errors import ContrafuseError, WriteError
from .checkpoint import CHECKPOINT_NAME
from .validation import FOLDER as VALIDATION_FOLDER
from .validation import LOG_NAME as VALIDATION_LOG
from .validation import read_jsonl

LOG_NAME = "log.jsonl"
LOCK_NAME = ".contrafuse-train.lock"
RUN_FILES = (CHECKPOINT_NAME, LOG_NAME, VALIDATION_LOG)
RUN_FOLDERS = (VALIDATION_FOLDER, "tensorboard", "best")


class RunFolderError(ContrafuseError):
    """A run folder cannot be used: it holds another run, or another process is training in it."""


def run_contents(out_dir: Path) -> list[str]:
    """What in ``out_dir`` belongs to a training run (names, sorted); empty for a fresh folder."""
    if not out_dir.is_dir():
        return []
    found = [n for n in RUN_FILES + RUN_FOLDERS if (out_dir / n).exists()]
    found += [p.name for p in out_dir.glob("*.safetensors")]
    return sorted(found)


def check_run_folder(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that holds a run unless resuming or starting over; changes nothing."""
    if resume and overwrite:
        raise RunFolderError("--resume continues a run and --overwrite starts it over: give one of them")
    if out_dir.exists() and not out_dir.is_dir():
        raise WriteError(out_dir, "is a file, not a run folder")
    found = run_contents(out_dir)
    if found and not resume and not overwrite:
        raise RunFolderError(
            f"{out_dir}: holds a training run ({', '.join(found)}); pass --resume to continue it, "
            "--overwrite to start it over, or choose another --out"
        )


def clear_run(out_dir: Path) -> None:
    """Remove the previous run's checkpoint, logs, validation and TensorBoard files (``--overwrite``)."""
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (out_dir / name).is_dir():
            shutil.rmtree(out_dir / name)


def trim_log(out_dir: Path, last_step: int) -> None:
    """Keep the lines of ``log.jsonl`` up to ``last_step`` (a resumed run's checkpoint), atomically."""
    path = out_dir / LOG_NAME
    if path.is_file():
        lines = read_jsonl(path, last_step)
        write_text(path, "".join(line + "\n" for line in lines), overwrite=True)


class RunLock:
    """The lock file of a run folder, held while a run trains (see the module doc)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}
        self.held = False

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunFolderError` naming the process that holds it."""
        text = json.dumps(self.owner) + "\n"
        try:
            write_text(self.path, text)
        except WriteError:
            holder = self._holder()
            if holder is not None and self._alive(holder):
                raise RunFolderError(
                    f"{self.path.parent}: another training process (pid {holder.get('pid')} on {holder.get('host')}) "
                    f"is using this run folder; if it is not running any more, delete {self.path}"
                ) from None
            write_text(self.path, text, overwrite=True)  # its process is gone: a stale lock
        self.held = True

    def release(self) -> None:
        if self.held and self._holder() == self.owner:
            self.path.unlink(missing_ok=True)
        self.held = False

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _alive(self, holder: dict) -> bool:
        if holder.get("host") != self.owner["host"]:
            return True  # another machine: cannot tell, so assume it runs
        try:
            pid = int(holder.get("pid", 0))
        except (TypeError, ValueError):
            return False
        if pid <= 0:  # os.kill(0 or -1) would signal a whole group
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OverflowError):
            return True
        return True
