"""What the decision journal costs in memory: entries kept as objects against entries packed.

The journal keeps `journal_size` (100) entries of every group, so 10,000 groups hold a million.
Part 1 makes real decisions (the engine's handlers over fake metrics that move every tick, two
checks a group) and keeps the same entries both ways, side by side: as `Entry` objects (a deque of
them per group, as the journal did) and in `engine.journal.Journal` (the newest an object, the older
ones packed). It counts per entry the objects the garbage collector tracks, the allocations and
bytes (tracemalloc), and the time to read a whole journal back.

Part 2 fills 10,000 groups x 100 entries each way, each in a fresh process (fresh copies of the part
1 decisions: new strings and floats, names shared as the policies share them): resident memory, the
time of one full collection (what the event loop waits for when one runs), and the resident
memory once every group is forgotten, collected and the heap trimmed.

    .venv/bin/python bench/memory.py [--groups 10000] [--size 100]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler import model
from autoscaler.engine import handler, journal, limiter, memory
from autoscaler.policy import files
from autoscaler.runtime import clock
from autoscaler.telemetry import metrics
from bench.fleet import group_policy, rss_mib
from tests import fakes

FORMS = ("objects", "packed")


class Book(Protocol):
    """What both forms of the journal offer the bench."""

    def append(self, entry: journal.Entry) -> None: ...

    def recent(self, group: str, limit: int | None = None) -> list[journal.Entry]: ...

    def forget(self, group: str) -> None: ...


class ObjectJournal:
    """The journal as it was: a deque of `Entry` objects per group."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: dict[str, collections.deque[journal.Entry]] = {}

    def append(self, entry: journal.Entry) -> None:
        """Keep `entry`, dropping the group's oldest when full."""
        ring = self._entries.setdefault(entry.decision.group, collections.deque(maxlen=self.size))
        ring.append(entry)

    def recent(self, group: str, limit: int | None = None) -> list[journal.Entry]:
        """Newest first."""
        return list(reversed(self._entries.get(group, ())))[:limit]

    def forget(self, group: str) -> None:
        """Drop a group."""
        self._entries.pop(group, None)


def book(form: str, size: int) -> Book:
    """An empty journal of `form`."""
    return ObjectJournal(size) if form == "objects" else journal.Journal(size)


async def real_entries(groups: int, ticks: int) -> list[journal.Entry]:
    """Entries of `groups` real handlers over `ticks` evaluations, metrics moving every tick."""
    system = clock.SystemClock()
    target = fakes.FakeTarget(system, boot_time=0.0)  # type: ignore[arg-type]
    source = fakes.FakeMetricSource()
    deps = handler.Deps(
        target=target,
        sources={"fake": source},
        clock=system,
        limiter=limiter.Limiter(4, 30.0),
        store=memory.MemoryStore(tempfile.mkdtemp(prefix="bench-memory-")),
        journal=journal.Journal(ticks),
        metrics=metrics.Metrics(CollectorRegistry()),
    )
    handlers = []
    for index in range(groups):
        policy = group_policy(index)
        target.add(policy.group, 4)
        handlers.append(
            handler.GroupHandler(files.LoadedGroup(policy, "bench", 1, files.revision(policy)), deps)
        )
    shuffle = random.Random(7)
    for _ in range(ticks):
        for query in [c.query for h in handlers for c in h.policy.checks]:
            source.values[query] = shuffle.uniform(5.0, 200.0)
        await asyncio.gather(*(h.tick() for h in handlers))
    return [e for h in handlers for e in reversed(deps.journal.recent(h.group))]


def _fresh(text: str) -> str:
    """A new string equal to `text` (each tick formats its reasons anew)."""
    return (text + " ")[:-1]


def copy_entry(entry: journal.Entry, group: str, tick: int) -> journal.Entry:
    """An entry like `entry` for `group`, of new strings and floats as a new tick would make."""
    d = entry.decision
    checks = tuple(
        model.CheckReport(
            c.name, c.kind, None if c.value is None else c.value * 1.0, c.proposal, _fresh(c.detail)
        )
        for c in d.checks
    )
    trail = tuple(model.Stage(s.name, s.before, s.after, _fresh(s.reason)) for s in d.trail)
    decision = model.Decision(
        group, d.at + tick, d.current, d.desired, checks, trail, _fresh(d.reason), d.act, d.victims
    )
    return journal.Entry(tick + 1000, decision, entry.state, entry.outcome, _fresh(entry.detail))


@dataclass
class EntryCost:
    """Part 1 figures of one form."""

    form: str
    entries: int
    tracked: float
    blocks: float
    bytes: float
    read_all_ms: float


def _keep(form: str, entries: list[journal.Entry], size: int) -> Book:
    kept = book(form, size)
    for index, entry in enumerate(entries):
        kept.append(copy_entry(entry, entry.decision.group, index))
    return kept


def entry_cost(form: str, entries: list[journal.Entry], size: int) -> EntryCost:
    """Per-entry cost of `entries` kept in a journal of `form`, by what forgetting them all frees."""
    groups = sorted({e.decision.group for e in entries})
    kept = _keep(form, entries, size)
    started = time.perf_counter()
    read = sum(len(kept.recent(g)) for g in groups)
    read_ms = (time.perf_counter() - started) * 1000
    del kept
    gc.collect()
    tracemalloc.start()
    kept = _keep(form, entries, size)
    gc.collect()
    tracked = len(gc.get_objects())
    full = tracemalloc.take_snapshot()
    for group in groups:
        kept.forget(group)
    gc.collect()
    freed_tracked = tracked - len(gc.get_objects())
    empty = tracemalloc.take_snapshot()
    tracemalloc.stop()
    diff = full.compare_to(empty, "filename")
    return EntryCost(
        form,
        read,
        freed_tracked / read,
        sum(d.count_diff for d in diff) / read,
        sum(d.size_diff for d in diff) / read,
        read_ms,
    )


@dataclass
class Fill:
    """Part 2 figures of one form."""

    form: str
    groups: int
    size: int
    rss_start_mib: float
    rss_full_mib: float
    tracked_millions: float
    fill_s: float
    full_collection_ms: float
    rss_forgotten_mib: float


def fill(form: str, groups: int, size: int, pool: list[journal.Entry]) -> Fill:
    """Inside a child: `groups` x `size` entries of `form`; memory, a full collection, then forget all."""
    gc.collect()
    start = rss_mib()
    kept = book(form, size)
    names = [f"g{index:05d}" for index in range(groups)]
    started = time.perf_counter()
    for tick in range(size):
        for index, name in enumerate(names):
            kept.append(copy_entry(pool[(index + tick) % len(pool)], name, tick))
    filled = time.perf_counter() - started
    gc.collect()
    full = rss_mib()
    tracked = len(gc.get_objects())
    started = time.perf_counter()
    gc.collect()
    collection_ms = (time.perf_counter() - started) * 1000
    for name in names:
        kept.forget(name)
    gc.collect()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    return Fill(form, groups, size, start, full, tracked / 1e6, filled, collection_ms, rss_mib())


def entry_table(results: list[EntryCost]) -> Table:
    """Part 1 side by side, with ratios to entries kept as objects."""
    table = Table(
        title=f"one journal entry, real decisions of two-check groups ({results[0].entries:,} entries)"
    )
    for column in (
        "form",
        "tracked objects",
        "allocations",
        "bytes",
        "read all back",
        "x bytes",
        "x allocations",
    ):
        table.add_column(column, justify="right")
    base = results[0]
    for r in results:
        table.add_row(
            r.form,
            f"{r.tracked:.2f}",
            f"{r.blocks:.2f}",
            f"{r.bytes:,.0f}",
            f"{r.read_all_ms:.1f} ms",
            f"{r.bytes / base.bytes:.2f}",
            f"{r.blocks / base.blocks:.3f}",
        )
    return table


def fill_table(results: list[Fill]) -> Table:
    """Part 2 side by side."""
    first = results[0]
    table = Table(title=f"{first.groups:,} groups x {first.size} entries, one process each")
    for column in ("form", "fill", "RSS start", "RSS full", "journal", "x journal", "tracked objects"):
        table.add_column(column, justify="right")
    for column in ("one full collection", "RSS after forgetting all"):
        table.add_column(column, justify="right")
    base = first.rss_full_mib - first.rss_start_mib
    for r in results:
        grown = r.rss_full_mib - r.rss_start_mib
        table.add_row(
            r.form,
            f"{r.fill_s:.1f} s",
            f"{r.rss_start_mib:.0f} MiB",
            f"{r.rss_full_mib:,.0f} MiB",
            f"{grown:,.0f} MiB",
            f"{grown / base:.2f}",
            f"{r.tracked_millions:.2f} M",
            f"{r.full_collection_ms:,.0f} ms",
            f"{r.rss_forgotten_mib:,.0f} MiB",
        )
    return table


def _child(form: str, groups: int, size: int, pool_file: Path) -> Fill:
    pool_groups, pool_ticks = json.loads(pool_file.read_text())
    pool = asyncio.run(real_entries(pool_groups, pool_ticks))
    return fill(form, groups, size, pool)


def run_children(forms: Iterable[str], groups: int, size: int) -> list[Fill]:
    """Part 2: one fresh process per form."""
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as temp:
        pool_file = Path(temp) / "pool.json"
        pool_file.write_text(json.dumps([20, 20]))
        for form in forms:
            args = [sys.executable, __file__, "--child", form, str(groups), str(size), str(pool_file)]
            out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
            results.append(Fill(**json.loads(out.strip().splitlines()[-1])))
    return results


def main(args: argparse.Namespace) -> None:
    """Both parts, each printed as a table."""
    console = Console(width=200)
    entries = asyncio.run(real_entries(50, args.size))
    console.print(entry_table([entry_cost(form, entries, args.size) for form in FORMS]))
    console.print(fill_table(run_children(FORMS, args.groups, args.size)))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=100, help="entries per group (journal_size)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse()
    import structlog

    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # the figures alone on stdout
    if options.child:
        form, count, size, where = options.child
        print(json.dumps(_child(form, int(count), int(size), Path(where)).__dict__))
    else:
        main(options)
