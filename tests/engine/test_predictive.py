"""Predictive scaling in the handler: history from a range query, a floor in active mode only."""

from __future__ import annotations

import dataclasses

from autoscaler import model
from autoscaler.engine import handler
from tests import fakes
from tests.engine.conftest import World, loaded, make_policy

HOUR = 3600.0


def office_history(now: float, days: int = 14) -> model.Samples:
    """Every 5 minutes for `days` days: 400 sessions from 08:00 to 18:00 UTC, 40 otherwise."""
    start = now - days * 24 * HOUR
    samples = []
    t = start
    while t <= now:
        hour = (t % (24 * HOUR)) / HOUR
        samples.append(model.Sample(400.0 if 8 <= hour < 18 else 40.0, t))
        t += 300.0
    return tuple(samples)


def predictive_policy(mode: str) -> object:
    predictive = {"mode": mode, "source": "fake", "query": "sessions", "per_instance": 100, "lead": "30m"}
    return make_policy(checks=[], predictive=predictive)


async def test_active_mode_raises_the_floor_ahead_of_the_ramp(world: World) -> None:
    world.clock.wall = fakes.EPOCH - 0.5 * HOUR  # Monday 07:30 UTC, the ramp is 30 minutes away
    world.source.history = office_history(world.clock.now())
    world.target.add("web", 1)
    web = world.handler(predictive_policy("active"))  # type: ignore[arg-type]
    entry = await web.tick()
    assert entry is not None
    assert entry.decision.desired >= 4
    assert any(stage.name == "forecast" for stage in entry.decision.trail)
    assert entry.outcome == "acted"


async def test_shadow_mode_exports_the_forecast_and_never_acts(world: World) -> None:
    world.clock.wall = fakes.EPOCH - 0.5 * HOUR
    world.source.history = office_history(world.clock.now())
    world.target.add("web", 1)
    web = world.handler(predictive_policy("shadow"))  # type: ignore[arg-type]
    entry = await web.tick()
    assert entry is not None
    assert entry.decision.desired == 1
    predicted = world.sample("autoscaler_forecast_predicted", {"group": "web"})
    assert predicted is not None
    assert predicted >= 300
    assert world.target.calls == []


async def test_history_is_fetched_at_a_modest_cadence(world: World) -> None:
    world.source.history = office_history(world.clock.now())
    world.target.add("web", 1)
    web = world.handler(predictive_policy("shadow"))  # type: ignore[arg-type]
    for _ in range(4):
        await web.tick()
        world.clock.advance(15)
    assert len(world.source.calls) == 1
    world.clock.advance(300)
    await web.tick()
    assert len(world.source.calls) == 2


async def test_newest_history_is_topped_up_between_full_reads(world: World) -> None:
    start = world.clock.now()
    recorded_later = model.Sample(390.0, start + 200)
    world.source.history = (*office_history(start), recorded_later)  # the source keeps recording
    world.target.add("web", 1)
    web = world.handler(predictive_policy("shadow"))  # type: ignore[arg-type]
    await web.tick()
    first_newest = web.forecaster.history[-1].timestamp
    world.clock.advance(290)  # past the next recorded point, before the next full read (300 s)
    await web.tick()
    assert len(world.source.calls) == 2
    assert web.forecaster.history[-1] == recorded_later
    assert first_newest == start
    assert web.forecaster.history[0].timestamp >= world.clock.now() - 14 * 24 * HOUR


@dataclasses.dataclass
class _BuggyHistory(fakes.FakeMetricSource):
    """A source whose range query lets a foreign exception escape, as a parser bug would."""

    async def query_range(self, query: str, start: float, end: float, step: float) -> model.Samples:
        raise AttributeError("'NoneType' object has no attribute 'get'")


async def test_a_history_source_bug_leaves_the_tick_to_the_checks(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    buggy = _BuggyHistory(values={"load": 50.0})
    deps = dataclasses.replace(world.deps, sources={"fake": buggy})
    predictive = {"mode": "active", "source": "fake", "query": "sessions", "per_instance": 100}
    web = handler.GroupHandler(loaded(make_policy(predictive=predictive)), deps)
    entry = await web.tick()
    assert entry is not None
    assert (entry.decision.desired, entry.outcome) == (5, "acted")


async def test_the_lead_is_the_measured_clone_to_ready_p90(world: World) -> None:
    world.source.history = office_history(world.clock.now())
    world.target.add("web", 1)
    policy = make_policy(checks=[], predictive={"mode": "shadow", "source": "fake", "query": "sessions"})
    web = world.handler(policy)
    await web.tick()  # nothing measured yet: warm-up plus one evaluation interval
    assert (
        web.forecaster.book.pending[-1].start
        == world.clock.now() + policy.warmup + policy.evaluation_interval
    )
    world.target.provision_p90 = 42.0
    world.clock.advance(15)
    await web.tick()
    assert web.forecaster.book.pending[-1].start == world.clock.now() + 42.0
