"""The file_sd file: replaced atomically, so Prometheus never reads half a list.

Prometheus watches the directory (inotify) and re-reads on change; a partly written file would
fail to parse and keep the previous targets, which is safe but late. Writing a temporary file in
the same directory, fsyncing it and renaming it over the old one avoids that altogether.
"""

from __future__ import annotations

from pathlib import Path

from autoscaler import atomic


def write(path: str | Path, text: str) -> None:
    """Replace `path` with `text` in one step (0644, readable by a Prometheus running as its own user)."""
    atomic.write_text(path, text, mode=0o644)
