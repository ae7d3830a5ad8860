"""The ticker pokes each group at its interval: on the monotonic clock in fake time, and in real time."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from autoscaler.engine import handler, journal, limiter, memory
from autoscaler.runtime import clock, ticker
from autoscaler.telemetry import metrics
from tests import fakes
from tests.engine.conftest import loaded, make_policy


def _handler(tmp_path: Path, interval: str, group: str = "web") -> handler.GroupHandler:
    system = clock.SystemClock()
    deps = handler.Deps(
        target=fakes.FakeTarget(system),  # type: ignore[arg-type]
        sources={},
        clock=system,
        limiter=limiter.Limiter(1, 1.0),
        store=memory.MemoryStore(tmp_path),
        journal=journal.Journal(),
        metrics=metrics.Metrics(CollectorRegistry()),
    )
    return handler.GroupHandler(loaded(make_policy(group=group, evaluation_interval=interval)), deps)


async def test_pokes_at_once_then_every_interval_and_forgets_removed_groups(tmp_path: Path) -> None:
    web = _handler(tmp_path, "1s")
    pokes: list[float] = []
    web.poke = lambda: pokes.append(time.monotonic())  # type: ignore[method-assign]
    ticks = ticker.Ticker()
    ticks.start()
    try:
        ticks.sync([web])
        await asyncio.sleep(0)  # one loop turn: the pulse's first step runs, no timer involved
        assert len(pokes) == 1
        await fakes.eventually(lambda: len(pokes) >= 3, deadline=10.0)
        ticks.sync([])
        assert ticks.scheduler.get_jobs() == []
    finally:
        ticks.shutdown()
    spacings = [later - earlier for earlier, later in itertools.pairwise(pokes)]
    assert min(spacings) >= 1.0 - 0.01, spacings  # never sooner than the interval (loop clock slack)


async def test_pokes_follow_the_monotonic_clock_across_a_wall_clock_step(tmp_path: Path) -> None:
    fake = fakes.FakeClock()
    web = _handler(tmp_path, "15s")
    pokes: list[float] = []
    web.poke = lambda: pokes.append(fake.monotonic())  # type: ignore[method-assign]
    ticks = ticker.Ticker(jitter=2.0, clock=fake)
    ticks.sync([web])
    assert pokes == []
    ticks.start()
    try:
        await fakes.eventually(lambda: len(pokes) >= 3)
        fake.wall -= 3600  # NTP steps the wall clock back an hour
        stepped = len(pokes)
        await fakes.eventually(lambda: len(pokes) >= stepped + 3)
    finally:
        ticks.shutdown()
    stopped = len(pokes)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(pokes) == stopped
    assert all(0.0 <= at - pokes[0] - 15.0 * beat <= 2.0 for beat, at in enumerate(pokes))


def test_first_evaluations_spread_over_a_window_paced_and_fixed_by_name() -> None:
    names = [f"g{i:05d}" for i in range(1000)]
    offsets = ticker.first_offsets(dict.fromkeys(names, 60.0), pace=100.0)
    window = 999 / 100.0
    assert all(0.0 <= offset < window for offset in offsets.values())
    assert len(set(offsets.values())) == len(names)
    early = sum(1 for offset in offsets.values() if offset < window / 2)
    assert 400 < early < 600  # spread evenly, not bunched at the start
    assert offsets == ticker.first_offsets(dict.fromkeys(reversed(names), 60.0), pace=100.0)
    assert all(offset < 2.0 for offset in ticker.first_offsets(dict.fromkeys(names, 2.0), 100.0).values())
    assert ticker.first_offsets({"web": 60.0}) == {"web": 0.0}


class _HeldClock(fakes.FakeClock):
    """Fake time whose sleeps are recorded by task and never end (each pulse stops at its first)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: dict[str, float] = {}

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sleeps.setdefault(task.get_name(), seconds)
        await asyncio.Event().wait()


async def test_groups_starting_together_are_first_poked_at_their_offsets(tmp_path: Path) -> None:
    held = _HeldClock()
    groups = [_handler(tmp_path, "30s", f"g{i:03d}") for i in range(200)]
    poked: list[str] = []
    for each in groups:
        each.poke = lambda name=each.group: poked.append(name)  # type: ignore[method-assign]
    ticks = ticker.Ticker(clock=held, pace=50.0)
    ticks.sync(groups)
    ticks.start()
    try:
        for _ in range(3):
            await asyncio.sleep(0)
        expected = ticker.first_offsets(dict.fromkeys((g.group for g in groups), 30.0), pace=50.0)
        assert {f"tick:{g}": offset for g, offset in expected.items()} == held.sleeps
        assert poked == []  # none at once: 200 groups at 50 per second take 4 seconds
        edited = groups[7]
        edited.update(loaded(make_policy(group=edited.group, evaluation_interval="30s", max=9)))
        ticks.sync(groups)
        await asyncio.sleep(0)
        assert poked == [edited.group]  # an edited policy is evaluated at once
    finally:
        ticks.shutdown()
