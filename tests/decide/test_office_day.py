"""A whole office day through the core in virtual time: the schedule is ready before people arrive,
capacity follows the ramp, and the group neither flaps nor outlives the evening."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

from autoscaler import decide, model
from autoscaler.policy import files, spec

BERLIN = ZoneInfo("Europe/Berlin")
POLICY = """
group: webmail
golden: /golden/webmail.qcow2
template: webmail-template
min: 2
max: 30
evaluation_interval: 15s
warmup: 60s
checks:
  - name: sessions
    source: prometheus
    query: sum(sessions)
    strategy: {kind: per_instance, per_instance: 100}
scale_up: {cooldown: 0s, rate: {instances: 4, percent: 100, period: 1m}}
scale_down: {stabilization: 10m, cooldown: 5m, rate: {instances: 2, period: 5m}}
schedules:
  - {name: office-hours, cron: "30 7 * * mon-fri", timezone: Europe/Berlin, duration: 10h, min: 8}
"""


def sessions_at(hour: float) -> float:
    """Sessions over a weekday: quiet night, ramp 07:30-09:00, lunch dip, evening fall."""
    ramp = 1 / (1 + math.exp(-(hour - 8.2) * 4)) - 1 / (1 + math.exp(-(hour - 17.5) * 3))
    lunch = 0.25 * math.exp(-(((hour - 12.5) / 0.5) ** 2))
    return 60 + 1800 * max(ramp - lunch, 0.0)


class Fleet:
    """Instances that become ready one boot time after their clone (virtual time)."""

    def __init__(self, boot_seconds: float) -> None:
        self.boot_seconds = boot_seconds
        self.created: dict[str, float] = {}
        self.serial = 0

    def inventory(self, now: float) -> model.GroupInventory:
        members = tuple(
            model.Instance(
                name,
                name,
                model.InstanceState.READY if now - t >= self.boot_seconds else model.InstanceState.BOOTING,
                t,
            )
            for name, t in self.created.items()
        )
        return model.GroupInventory("webmail", members)

    def apply(self, decision: model.Decision, now: float) -> None:
        for _ in range(decision.desired - decision.current):
            self.serial += 1
            self.created[f"webmail-{self.serial}"] = now
        for victim in decision.victims:
            del self.created[victim]


def run_day(group: spec.GroupPolicy) -> list[tuple[float, int, int]]:
    start = datetime(2026, 11, 25, 0, 0, tzinfo=BERLIN).timestamp()  # a Wednesday
    fleet, memory, history = Fleet(boot_seconds=60), model.GroupMemory(), []
    for step in range(24 * 3600 // 15):
        now = start + 15 * step
        hour = step * 15 / 3600
        inventory = fleet.inventory(now)
        inputs = {"sessions": model.Fresh((model.Sample(sessions_at(hour), now),))}
        decision, memory = decide.evaluate(group, inventory, inputs, memory, now)
        if decision.desired != decision.current:
            fleet.apply(decision, now)
            memory = memory.record_change(now, decision.desired - decision.current)
        history.append((hour, len(fleet.created), inventory.ready))
    return history


def test_office_day_in_virtual_time() -> None:
    (group,) = files.load_text(POLICY, "webmail.yaml")[0]
    history = run_day(group.policy)
    at = {round(h * 60): (size, ready) for h, size, ready in history}
    assert at[7 * 60 + 29][0] < 8
    assert at[7 * 60 + 32][1] >= 8  # the floor is ready minutes after 07:30
    assert at[10 * 60][1] >= sessions_at(10) / (100 * 1.1)  # the ramp is served, within tolerance
    assert at[23 * 60][0] == 2  # given back at night
    sizes = [size for _, size, _ in history]
    reversals = sum(1 for a, b, c in zip(sizes, sizes[1:], sizes[2:], strict=False) if (b - a) * (c - b) < 0)
    assert reversals <= 4
    assert max(sizes) <= 30
