"""What a group remembers survives restarts: its GroupMemory and operator pause, as one JSON file.

Without it a restarted daemon would forget a scale-out it made seconds ago and act again at once
(the rule that a restart starts in cooldown after a recent change). Files are written atomically
(temp file, fsync, rename) in a worker thread, so a crash leaves the old or the new version.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from autoscaler import atomic, model

FORMAT = 1
"""Version of the file layout; a file of another version is ignored (the group starts afresh)."""


@dataclass(frozen=True, slots=True)
class Saved:
    """Everything persisted for one group."""

    memory: model.GroupMemory
    """The decision core's memory."""
    paused: str | None = None
    """The operator's pause reason, or None when not paused by an operator."""
    paused_at: float | None = None
    """When the operator paused the group (Unix seconds), shown in /status."""


def encode(saved: Saved) -> dict[str, Any]:
    """The JSON-ready form of `saved`."""
    memory = saved.memory
    return {
        "format": FORMAT,
        "recommendations": [list(pair) for pair in memory.recommendations],
        "changes": [[change.at, change.delta] for change in memory.changes],
        "last_up_at": memory.last_up_at,
        "last_down_at": memory.last_down_at,
        "last_fresh": [list(entry) for entry in memory.last_fresh],
        "paused": saved.paused,
        "paused_at": saved.paused_at,
    }


def decode(data: dict[str, Any]) -> Saved | None:
    """The saved state in `data`, or None when it is of another format or malformed."""
    if data.get("format") != FORMAT:
        return None
    try:
        memory = model.GroupMemory(
            recommendations=tuple((float(t), int(c)) for t, c in data["recommendations"]),
            changes=tuple(model.Change(float(at), int(delta)) for at, delta in data["changes"]),
            last_up_at=_optional_float(data.get("last_up_at")),
            last_down_at=_optional_float(data.get("last_down_at")),
            # absent in files written before on_missing had bounds: no anchors yet
            last_fresh=tuple((str(n), float(t), int(c)) for n, t, c in data.get("last_fresh", ())),
        )
    except (KeyError, TypeError, ValueError):
        return None
    paused = data.get("paused")
    if not isinstance(paused, str):
        return Saved(memory)
    at = data.get("paused_at")  # absent in files written before pauses were dated
    return Saved(memory, paused, float(at) if isinstance(at, int | float) else None)


_MOVING = frozenset({"recommendations", "last_fresh"})
"""Keys that change on every tick and alone never force a write."""


def _essential(data: dict[str, Any]) -> dict[str, Any]:
    """What a save must write at once: everything but the keys that move on every tick."""
    return {k: v for k, v in data.items() if k not in _MOVING}


def _optional_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _read(path: Path) -> Saved | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return decode(data) if isinstance(data, dict) else None


class GroupStore(Protocol):
    """Where group memory is kept: files in the state directory, or etcd when daemons coordinate."""

    def path(self, group: str) -> str | Path:
        """Where `group`'s memory lives, for the log line when a write fails."""
        ...

    async def load(self, group: str) -> Saved | None:
        """The group's saved state, or None; OSError when the store cannot be read now."""
        ...

    async def save(self, group: str, saved: Saved) -> None:
        """Keep the group's state; OSError when it could not be written."""
        ...

    def forget(self, group: str) -> None:
        """Drop what is cached of `group` (its policy is gone; what is stored stays)."""
        ...


class MemoryStore:
    """One JSON file per group under a state directory (systemd's StateDirectory in production)."""

    def __init__(self, directory: str | Path, refresh_every: int = 20) -> None:
        self.directory = Path(directory) / "groups"
        self.refresh_every = refresh_every
        """Rewrite at least every this many saves even when only recommendations moved."""
        self._written: dict[str, tuple[dict[str, Any], int]] = {}

    def path(self, group: str) -> Path:
        """The file that holds `group`'s state (group names are validated: safe as file names)."""
        return self.directory / f"{group}.json"

    async def load(self, group: str) -> Saved | None:
        """The group's saved state, or None when there is none (or it is unreadable).

        What was read counts as written: a restarted daemon's first save of an unchanged group
        writes nothing (10,000 groups restarting made 10,000 fsyncs in their first evaluations).
        """
        saved = await asyncio.to_thread(_read, self.path(group))
        if saved is not None:
            self._written[group] = (_essential(encode(saved)), 0)
        return saved

    async def save(self, group: str, saved: Saved) -> None:
        """Replace the group's saved state atomically, when it matters.

        Changes, last action times and the pause are written at once. The stabilization history
        and the checks' last-fresh anchors move on every tick; they are written every
        `refresh_every` saves, since losing their newest entries in a crash only makes the
        restarted group more cautious (the core then assumes the current size was recommended, and
        an older anchor ends an on_missing scale-up sooner), and one fsync per group per tick
        dominates a large fleet.
        """
        data = encode(saved)
        essential = _essential(data)
        last = self._written.get(group)
        if last is not None and last[0] == essential and last[1] + 1 < self.refresh_every:
            self._written[group] = (essential, last[1] + 1)
            return
        text = json.dumps(data, sort_keys=True)
        await asyncio.to_thread(atomic.write_text, self.path(group), text)
        self._written[group] = (essential, 0)

    def forget(self, group: str) -> None:
        """Drop what is remembered of `group`'s last write (its policy is gone; its file stays, for
        a group defined again)."""
        self._written.pop(group, None)
