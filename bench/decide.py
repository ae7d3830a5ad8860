"""How many evaluations per second the pure decision core sustains: 1,000 groups x 3 checks.

Variants run side by side in one process so their ratios are comparable: plain checks, with a
calendar window, and with a warm stabilization memory (a full 10-minute window of history).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from autoscaler import decide, model
from autoscaler.policy import spec

GROUPS = 1000
ROUNDS = 5
NOW = 1_764_000_000.0
DST_DAY = 1_774_771_200.0
"""2026-03-29 10:00 Europe/Berlin: the window's day holds a DST change, so openings are walked."""
OFFICE = "30 7 * * mon-fri"


def make_policy(index: int, cron: str | None) -> spec.GroupPolicy:
    checks: list[dict[str, Any]] = [
        {"name": "cpu", "source": "p", "query": "q1", "strategy": {"kind": "target_tracking", "target": 0.6}},
        {
            "name": "sessions",
            "source": "p",
            "query": "q2",
            "strategy": {"kind": "per_instance", "per_instance": 250},
        },
        {
            "name": "latency",
            "source": "p",
            "query": "q3",
            "strategy": {
                "kind": "threshold",
                "steps": [{"lower": 0.8, "change": 2}, {"upper": 0.1, "change": -1}],
            },
        },
    ]
    schedules = (
        [{"cron": cron, "timezone": "Europe/Berlin", "duration": "10h", "min": 4}] if cron is not None else []
    )
    data = {"group": f"g{index}", "golden": "g", "template": "t", "min": 1, "max": 50, "checks": checks}
    return spec.GroupPolicy.model_validate(
        {**data, "schedules": schedules, "scale_down": {"stabilization": "10m"}}
    )


def fleet(size: int) -> model.GroupInventory:
    members = tuple(
        model.Instance(f"i{i}", f"u{i}", model.InstanceState.READY, NOW - 3600 - i) for i in range(size)
    )
    return model.GroupInventory("g", members)


def inputs(index: int) -> dict[str, model.CheckInput]:
    return {
        "cpu": model.Fresh((model.Sample(0.3 + (index % 10) / 10, NOW),)),
        "sessions": model.Fresh((model.Sample(500.0 + index, NOW),)),
        "latency": model.Fresh((model.Sample(0.05 * (index % 20), NOW),)),
    }


def warm_memory() -> model.GroupMemory:
    return model.GroupMemory(recommendations=tuple((NOW - 600 + 15 * i, 5 + i % 3) for i in range(40)))


def measure(cron: str | None, memory: model.GroupMemory, now: float = NOW) -> float:
    """Evaluations per second over ROUNDS passes of all groups."""
    policies = [make_policy(i, cron) for i in range(GROUPS)]
    cases = [(p, fleet(4 + i % 8), inputs(i)) for i, p in enumerate(policies)]
    started = time.perf_counter()
    for _ in range(ROUNDS):
        for group, inventory, values in cases:
            decide.evaluate(group, inventory, values, memory, now)
    return GROUPS * ROUNDS / (time.perf_counter() - started)


def main() -> None:
    variants: list[tuple[str, Callable[[], float]]] = [
        ("3 checks", lambda: measure(None, model.GroupMemory())),
        ("3 checks + weekday 10 h window", lambda: measure(OFFICE, model.GroupMemory())),
        ("3 checks + every-5-min 10 h window", lambda: measure("*/5 * * * *", model.GroupMemory())),
        (
            "3 checks + 10 h window, day of a DST change",
            lambda: measure(OFFICE, model.GroupMemory(), DST_DAY),
        ),
        ("3 checks + 10 min window history", lambda: measure(None, warm_memory())),
    ]
    results = [(name, run()) for name, run in variants]
    base = results[0][1]
    table = Table(title=f"decision core: {GROUPS} groups x 3 checks, {ROUNDS} rounds")
    for column in ("variant", "evaluations/s", "µs/evaluation", "1,000-group cycle (ms)", "vs first"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    for name, rate in results:
        table.add_row(
            name, f"{rate:,.0f}", f"{1e6 / rate:.1f}", f"{GROUPS / rate * 1000:.1f}", f"{rate / base:.2f}x"
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
