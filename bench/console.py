"""What the web console costs the daemon: a group's history in memory, its JSON, and /status's windows.

Side by side in one process: recording a tick; serving six hours of history whole versus only the
points newer than the page has (what the page asks for between full reads); and the schedule
times /status shows for a fixed-time cron, a minute cron by bisection, and a minute cron by
walking every opening (what bisection replaced).
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table

from autoscaler import model
from autoscaler.engine import history
from autoscaler.policy import schedule, spec

NOW = 1_764_000_000.0
INTERVAL = 7.5
"""Seconds between ticks: six hours fill the history's 2,880 points."""
POLICY = spec.GroupPolicy.model_validate(
    {
        "group": "web",
        "golden": "g",
        "template": "t",
        "min": 1,
        "max": 50,
        "checks": [
            {
                "name": "sessions",
                "source": "p",
                "query": "q",
                "strategy": {"kind": "per_instance", "per_instance": 50},
            }
        ],
    }
)


def inventory(size: int, at: float) -> model.GroupInventory:
    members = tuple(
        model.Instance(f"web-{i}", f"u{i}", model.InstanceState.READY, at - 600 - i, at - 560 - i)
        for i in range(size)
    )
    return model.GroupInventory("web", members)


def tick(book: history.History, index: int) -> None:
    at = NOW + index * INTERVAL
    size = 8 + index % 5
    report = model.CheckReport("sessions", "fresh", 400.0 + index % 50, size, "")
    decision = model.Decision("web", at, size, size, (report,), (), "hold")
    book.record(decision, inventory(size, at), POLICY, forecast=(at + 300, 410.0))


def full_history() -> history.History:
    book = history.History()
    for index in range(history.MAX_POINTS + 100):
        tick(book, index)
    return book


def per_call(run: Callable[[], object], rounds: int) -> float:
    """Microseconds per call."""
    started = time.perf_counter()
    for _ in range(rounds):
        run()
    return (time.perf_counter() - started) / rounds * 1e6


def memory_of_a_full_history() -> int:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    book = full_history()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    del book
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def main() -> None:
    book = full_history()
    newest = book.points[-1].at
    rows: list[tuple[str, float, str]] = []
    counter = iter(range(10**9))
    rows.append(
        ("record one tick", per_call(lambda: tick(book, history.MAX_POINTS + next(counter)), 2000), "")
    )
    newest = book.points[-1].at
    whole = json.dumps(book.to_dict())
    newer = json.dumps(book.to_dict(since=newest - INTERVAL))
    rows.append(
        ("history JSON, all 6 h", per_call(lambda: json.dumps(book.to_dict()), 50), f"{len(whole):,} B")
    )
    rows.append(
        (
            "history JSON, newer points only",
            per_call(lambda: json.dumps(book.to_dict(newest - INTERVAL)), 50),
            f"{len(newer):,} B",
        )
    )
    office = spec.Schedule(cron="30 7 * * mon-fri", timezone="Europe/Berlin", duration=36000, min=4)
    minute = spec.Schedule(cron="* * * * *", duration=36000, min=4)
    inside = datetime(2025, 11, 26, 9, 0, tzinfo=UTC).timestamp()
    instant = datetime.fromtimestamp(inside, tz=UTC)
    fires = schedule.trigger(minute.cron, minute.timezone)
    rows.append(("window times, weekday cron", per_call(lambda: schedule.times(office, inside), 200), ""))
    rows.append(
        ("window times, minute cron (bisection)", per_call(lambda: schedule.times(minute, inside), 200), "")
    )
    rows.append(
        (
            "minute cron, walking every opening",
            per_call(lambda: schedule.last_opening(fires, instant, minute.duration, once=False), 5),
            "replaced",
        )
    )
    assert schedule.latest_fire(fires, instant - timedelta(seconds=36000), instant) == schedule.last_opening(
        fires, instant, minute.duration, once=False
    )
    table = Table(title=f"console: one group, {len(book.points):,} points ({history.MAX_AGE / 3600:g} h)")
    for column in ("operation", "µs/call", "size", "vs first of its kind"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    bases = {"record": rows[0][1], "history": rows[1][1], "window": rows[3][1], "minute": rows[3][1]}
    for name, micros, size in rows:
        base = next(value for key, value in bases.items() if key in name)
        table.add_row(name, f"{micros:,.1f}", size, f"{micros / base:.2f}x")
    Console(width=120).print(table)
    print(f"memory of one full history: {memory_of_a_full_history() / 1024:,.0f} KiB")


if __name__ == "__main__":
    main()
