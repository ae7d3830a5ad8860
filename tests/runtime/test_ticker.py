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


def _handler(tmp_path: Path, interval: str) -> handler.GroupHandler:
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
    return handler.GroupHandler(loaded(make_policy(evaluation_interval=interval)), deps)


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
