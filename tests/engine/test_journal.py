"""The journal keeps what an operator reads, in little memory: older entries packed, read back equal."""

from __future__ import annotations

import gc
import sys

from autoscaler import explain, model
from autoscaler.engine import journal


def _decision(group: str, at: float) -> model.Decision:
    checks = (
        model.CheckReport("sessions", "fresh", at / 7, 4, f"ceil({at / 7:g} / 10) = 4"),
        model.CheckReport("requests", "missing", None, 3, "on_missing: hold at 3"),
    )
    trail = (
        model.Stage("rate_limit", 9, 8, f"at most 4 per 1m ({int(at) % 4} already moved in that window)"),
        model.Stage("dry_run", 8, 8, "decision recorded, not carried out"),
    )
    reason = f"scale up 4 -> 8 (sessions: ceil({at / 7:g} / 10) = 4); rate_limit: at most 4 per 1m"
    return model.Decision(group, at, 4, 8, checks, trail, reason, False, ("web-1", "web-2"))


def _entry(group: str, tick: int) -> journal.Entry:
    return journal.Entry(tick, _decision(group, 1_000_000.0 + tick), "idle", "dry_run", f"detail {tick}")


def test_entries_read_back_equal_newest_first() -> None:
    book = journal.Journal(size=5)
    entries = [_entry("web", tick) for tick in range(8)]
    for entry in entries:
        book.append(entry)
    assert book.recent("web") == list(reversed(entries[-5:]))
    assert book.last("web") is entries[-1]
    assert book.recent("web", 2) == [entries[-1], entries[-2]]
    assert book.recent("web", 0) == []
    assert [e.to_dict() for e in book.recent("web")] == [e.to_dict() for e in reversed(entries[-5:])]
    assert explain.to_text(book.recent("web")[3].decision) == explain.to_text(entries[-4].decision)
    book.forget("web")
    assert (book.recent("web"), book.last("web")) == ([], None)


def test_journal_of_one_keeps_the_newest() -> None:
    book = journal.Journal(size=1)
    for tick in range(3):
        book.append(_entry("web", tick))
    assert [e.tick for e in book.recent("web")] == [2]


def test_an_older_entry_is_one_untracked_value_of_a_few_hundred_bytes() -> None:
    groups, size = 20, 50
    book = journal.Journal(size=size)
    gc.collect()
    tracked = len(gc.get_objects())
    for tick in range(size):
        for index in range(groups):
            book.append(_entry(f"g{index}", tick))
    gc.collect()
    per_group = (len(gc.get_objects()) - tracked) / groups
    # The newest entry (an object: entry, decision, reports, stages, tuples) and the group's ring;
    # kept as objects, 49 older entries would add some 7 tracked objects each.
    assert per_group < 15, per_group
    packed = [blob for ring in book._older.values() for blob in ring]
    assert len(packed) == groups * (size - 1)
    assert all(type(blob) is bytes and not gc.is_tracked(blob) for blob in packed)
    average = sum(map(sys.getsizeof, packed)) / len(packed)
    unpacked = _entry("g0", 1)
    as_objects = sum(map(sys.getsizeof, _parts(unpacked)))
    assert average < 0.6 * as_objects, (average, as_objects)


def _parts(entry: journal.Entry) -> list[object]:
    """The objects an entry is made of (shared interned names aside)."""
    d = entry.decision
    parts: list[object] = [entry, entry.detail, d, d.at, d.reason, d.checks, d.trail, d.victims]
    parts += [x for c in d.checks for x in (c, c.value, c.detail)]
    parts += [x for s in d.trail for x in (s, s.reason)]
    return parts
