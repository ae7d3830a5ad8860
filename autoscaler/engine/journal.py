"""A bounded, in-memory journal of decisions per group: what /status and /explain serve.

The decision's trail is the explanation; the journal adds what the handler then did with it (acted,
held by its state, failed), so an operator can see what would have happened in cooldown or pause.

A journal of 10,000 groups keeps a million entries. Kept as objects, each entry is a dozen of them
(the decision, its check reports and stages, their tuples, strings and floats) that every full
collection of the cyclic garbage collector walks. So only each group's newest entry stays an
object (the one /status and the metrics read on every tick); older ones are packed, when a newer
one arrives, into one immutable `bytes` value (`marshal`: exact floats, no code, not tracked by the
collector) and are expanded again only when an operator reads them (/v1/decisions, /explain, the
console). Readers see the same `Entry` either way (bench/memory.py measures both forms).
"""

from __future__ import annotations

import collections
import itertools
import marshal
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


_FORMAT = 4
"""marshal's format version: the newest, which shares repeated strings within one value."""


def pack(entry: Entry) -> bytes:
    """`entry` as one immutable value: nested tuples of numbers and strings, marshalled."""
    d = entry.decision
    checks = tuple((_s(c.name), _s(c.kind), _n(c.value), c.proposal, _s(c.detail)) for c in d.checks)
    trail = tuple((_s(s.name), s.before, s.after, _s(s.reason)) for s in d.trail)
    victims = tuple(_s(v) for v in d.victims)
    fields = (entry.tick, _s(entry.state), _s(entry.outcome), _s(entry.detail))
    decision = (_s(d.group), d.at, d.current, d.desired, checks, trail, _s(d.reason), d.act, victims)
    return marshal.dumps((fields, decision), _FORMAT)


def unpack(packed: bytes) -> Entry:
    """The entry `pack` made `packed` from (equal to it, field by field)."""
    (tick, state, outcome, detail), decision = marshal.loads(packed)  # noqa: S302 (only ever our own `pack`)
    group, at, current, desired, checks, trail, reason, act, victims = decision
    expanded = model.Decision(
        group=group,
        at=at,
        current=current,
        desired=desired,
        checks=tuple(model.CheckReport(*c) for c in checks),
        trail=tuple(model.Stage(*s) for s in trail),
        reason=reason,
        act=act,
        victims=victims,
    )
    return Entry(tick, expanded, state, outcome, detail)


def _s(text: str) -> str:
    """A plain str (marshal refuses subclasses such as a StrEnum member)."""
    return text if type(text) is str else str(text)


def _n(value: float | None) -> float | None:
    """A plain float or int (marshal refuses subclasses such as numpy's)."""
    return value if value is None or type(value) in (float, int) else float(value)


class Journal:
    """The last `size` entries of every group: the newest as an object, the older ones packed."""

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self._newest: dict[str, Entry] = {}
        self._older: dict[str, collections.deque[bytes]] = {}

    def append(self, entry: Entry) -> None:
        """Record an entry, packing the group's previous newest, dropping its oldest when full."""
        group = entry.decision.group
        previous = self._newest.get(group)
        self._newest[group] = entry
        if previous is None or self.size < 2:
            return
        ring = self._older.get(group)
        if ring is None:
            ring = self._older[group] = collections.deque(maxlen=self.size - 1)
        ring.append(pack(previous))

    def recent(self, group: str, limit: int | None = None) -> list[Entry]:
        """The group's entries, newest first (the first `limit` of them when given)."""
        newest = self._newest.get(group)
        if newest is None:
            return []
        older = self._older.get(group, collections.deque())
        if limit is None or limit < 0:
            entries = [newest, *map(unpack, reversed(older))]
            return entries if limit is None else entries[:limit]
        return [newest, *map(unpack, itertools.islice(reversed(older), limit - 1))] if limit else []

    def last(self, group: str) -> Entry | None:
        """The group's newest entry, if any."""
        return self._newest.get(group)

    def forget(self, group: str) -> None:
        """Drop a group's entries (its policy is gone)."""
        self._newest.pop(group, None)
        self._older.pop(group, None)
