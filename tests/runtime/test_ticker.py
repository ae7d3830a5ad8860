"""The ticker pokes each group at its interval with short real intervals (the only wall-clock engine test)."""

from __future__ import annotations

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
    pokes: list[int] = []
    web.poke = lambda: pokes.append(1)  # type: ignore[method-assign]
    ticks = ticker.Ticker()
    ticks.start()
    try:
        ticks.sync([web])
        await fakes.eventually(lambda: len(pokes) >= 2, deadline=5.0)
        ticks.sync([])
        assert ticks.scheduler.get_jobs() == []
    finally:
        ticks.shutdown()
