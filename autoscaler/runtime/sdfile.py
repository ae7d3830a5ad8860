"""The file_sd file: replaced atomically, so Prometheus never reads half a list.

Prometheus watches the directory (inotify) and re-reads on change; a partly written file would
fail to parse and keep the previous targets, which is safe but late. Writing a temporary file in
the same directory, fsyncing it and renaming it over the old one avoids that altogether.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write(path: str | Path, text: str) -> None:
    """Replace `path` with `text` in one step (0644, readable by a Prometheus running as its own user)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
