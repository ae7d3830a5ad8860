"""Replacing a file in one step: the daemon's records (group memory, the volume ledger, the
file_sd list) are read by restarts and other programs, which must never see half of one.

A temporary file in the same directory is written, fsynced and renamed over the old one; with
`sync_directory` the directory is fsynced too, so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_text(path: str | Path, text: str, *, mode: int | None = None, sync_directory: bool = False) -> None:
    """Replace `path` with `text` atomically; `mode` sets its permissions (else mkstemp's 0600)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if sync_directory:
        fsync_directory(target.parent)


def remove(path: str | Path, *, sync_directory: bool = False) -> None:
    """Delete `path` if it exists; with `sync_directory` the removal survives a power cut."""
    target = Path(path)
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
        if sync_directory:
            fsync_directory(target.parent)


def fsync_directory(directory: str | Path) -> None:
    """Make a directory's entries (a rename, an unlink) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
