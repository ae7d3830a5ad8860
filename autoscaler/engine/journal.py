"""A bounded, in-memory journal of decisions per group: what /status and /explain serve.

The decision's trail is the explanation; the journal adds what the handler then did with it (acted,
held by its state, failed), so an operator can see what would have happened in cooldown or pause.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from autoscaler import explain, model


@dataclass(frozen=True, slots=True)
class Entry:
    """One evaluation of one group and its outcome."""

    tick: int
    """The group's evaluation counter (the tick_id in the logs)."""
    decision: model.Decision
    """What the core decided, with its trail."""
    state: str
    """The handler's state after the tick."""
    outcome: str
    """What was done: none, acted, held_<state>, dry_run, slot_timeout, failed, partial, noop..."""
    detail: str = ""
    """Errors or the result of the action, one line."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = explain.to_dict(self.decision)
        data.update(tick=self.tick, state=self.state, outcome=self.outcome, detail=self.detail)
        return data


class Journal:
    """The last `size` entries of every group (a ring buffer each)."""

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self._entries: dict[str, collections.deque[Entry]] = {}

    def append(self, entry: Entry) -> None:
        """Record an entry, dropping the group's oldest one when full."""
        ring = self._entries.setdefault(entry.decision.group, collections.deque(maxlen=self.size))
        ring.append(entry)

    def recent(self, group: str, limit: int | None = None) -> list[Entry]:
        """The group's entries, newest first."""
        entries = list(reversed(self._entries.get(group, ())))
        return entries if limit is None else entries[:limit]

    def last(self, group: str) -> Entry | None:
        """The group's newest entry, if any."""
        ring = self._entries.get(group)
        return ring[-1] if ring else None

    def forget(self, group: str) -> None:
        """Drop a group's entries (its policy is gone)."""
        self._entries.pop(group, None)
