"""Atomic file output, the one way contrafuse writes a file.

A file is written to a hidden temporary file in the target's folder, then renamed into place,
so a reader (or a crash) never sees half a file. Rules every writer gets from here:

* An existing file is never replaced unless ``overwrite=True``; without it the rename is a
  hard link, which fails if the target appeared meanwhile (no race).
* The file gets mode ``0o666`` less the umask, as a plain ``open(path, "w")`` would, even when
  the encoder replaces the temporary file with one of its own (``safetensors`` writes ``0o600``,
  as ``tempfile.mkstemp`` does).
* Temporary files are named ``.<name>.<token>.partial<suffix>``; :func:`remove_stale_partials`
  cleans those an interrupted run left behind.
* Every failure (permission denied, read-only or full disk, a parent that is a file) is one
  :class:`~contrafuse.errors.WriteError` naming the target, never the temporary file.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Callable

from .errors import WriteError

PARTIAL_MARK = ".partial"


def partial_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (keeps the suffix: encoders choose formats by it)."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}{PARTIAL_MARK}{path.suffix}")


def is_partial(path: Path) -> bool:
    """True for a temporary file of :func:`partial_path`."""
    return path.name.startswith(".") and PARTIAL_MARK in path.name


def remove_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an interrupted run left in ``folder``; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if path.is_file() and is_partial(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOTDIR:
        return "a parent of it is a file, not a folder"
    if exc.errno == errno.EISDIR:
        return "is a folder"
    return exc.strerror or str(exc)


def _nearest_existing_parent(path: Path) -> Path:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_writable(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail early, before any expensive work, when ``path`` cannot be written.

    Checks that the target does not exist (unless ``overwrite``), is not a folder, and that
    its nearest existing parent is a writable folder. Creates nothing.
    """
    path = Path(path)
    if path.is_dir():
        raise WriteError(path, "is a folder, expected a file name")
    if path.exists() and not overwrite:
        raise WriteError(path, "already exists (pass --overwrite / overwrite=True to replace it)")
    parent = _nearest_existing_parent(path)
    if not parent.is_dir():
        raise WriteError(path, f"{parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(path, f"permission denied (cannot write in {parent})")
    return path


def _create_partial(path: Path) -> Path:
    parent = _nearest_existing_parent(path)
    if not parent.is_dir():
        raise WriteError(path, f"{parent} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            temp = partial_path(path)
            try:
                os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
                return temp
            except FileExistsError:
                continue
    except OSError as exc:
        raise WriteError(path, _reason(exc)) from None


def publish(temp: Path, path: Path, *, overwrite: bool) -> None:
    """Move a finished temporary file to ``path``: replace it, or never clobber an existing one."""
    if overwrite:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)
    except FileExistsError:
        raise WriteError(path, "already exists (pass --overwrite / overwrite=True to replace it)") from None
    except OSError:
        if path.exists():
            raise WriteError(path, "already exists (pass --overwrite / overwrite=True to replace it)") from None
        os.replace(temp, path)  # file systems without hard links
        return
    temp.unlink()


def write_with(path: str | os.PathLike, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Atomically create ``path`` with ``write(temp_path)``, an encoder that writes a named file.

    The temporary file exists (empty, with the final mode) when ``write`` is called; ``write``
    may overwrite it. Its own errors propagate; ``OSError`` becomes a :class:`WriteError`.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise WriteError(path, "already exists (pass --overwrite / overwrite=True to replace it)")
    if path.is_dir():
        raise WriteError(path, "is a folder, expected a file name")
    temp = _create_partial(path)
    try:
        mode = stat.S_IMODE(temp.stat().st_mode)  # what the umask gave the file we created
        write(temp)
        os.chmod(temp, mode)
        publish(temp, path, overwrite=overwrite)
    except OSError as exc:
        raise WriteError(path, _reason(exc)) from None
    finally:
        temp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Atomically write ``data`` to ``path``."""
    return write_with(path, lambda temp: temp.write_bytes(data), overwrite=overwrite)


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Atomically write ``text`` (UTF-8, newlines as given) to ``path``."""
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


class InputGuard:
    """The inputs of a run; refuses an output path that is one of them, whatever the flags.

    ``inputs``: ``(role, path)`` pairs, e.g. ``("infrared input", Path("ir/01.png"))``. Paths
    are compared resolved (links and ``..``), and by file identity when the output exists.
    """

    def __init__(self, inputs: list[tuple[str, Path]]) -> None:
        self.by_path: dict[Path, tuple[str, Path]] = {}
        self.by_identity: dict[tuple[int, int], tuple[str, Path]] = {}
        for role, path in inputs:
            path = Path(path)
            self.by_path[path.resolve()] = (role, path)
            identity = _identity(path)
            if identity is not None:
                self.by_identity[identity] = (role, path)

    def check(self, out: str | os.PathLike) -> None:
        """Raise :class:`~contrafuse.errors.WriteError` naming both paths when ``out`` is an input."""
        found = self.by_path.get(Path(out).resolve())
        identity = _identity(Path(out))
        if found is None and identity is not None:
            found = self.by_identity.get(identity)
        if found is not None:
            role, path = found
            raise WriteError(out, f"is the {role} {path} of this run; an output never replaces an input "
                                  "(choose another output name or folder)")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
