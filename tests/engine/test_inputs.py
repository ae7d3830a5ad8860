"""Check inputs: identical queries run once per tick, and every failure becomes a value."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from autoscaler import errors, model
from autoscaler.engine import inputs
from autoscaler.telemetry import metrics
from tests import fakes
from tests.engine.conftest import make_policy


def _check(name: str, query: str, **extra: object) -> dict[str, object]:
    strategy = {"kind": "per_instance", "per_instance": 10}
    return {"name": name, "source": "fake", "query": query, "strategy": strategy, **extra}


async def _gather(source: fakes.FakeMetricSource, *checks: dict[str, object]) -> dict[str, model.CheckInput]:
    policy = make_policy(checks=list(checks))
    observer = metrics.Metrics(CollectorRegistry())
    return await inputs.gather(policy, {"fake": source}, fakes.EPOCH, 0.2, observer)


async def test_identical_queries_are_asked_once_at_the_same_instant() -> None:
    source = fakes.FakeMetricSource(values={"q": 5.0})
    found = await _gather(source, _check("a", "q"), _check("b", "q"))
    assert source.calls == [("q", fakes.EPOCH)]
    assert found["a"] == found["b"] == model.Fresh((model.Sample(5.0, fakes.EPOCH),))


async def test_failures_become_values() -> None:
    source = fakes.FakeMetricSource(
        values={"old": 1.0, "x": None},
        errors={"down": errors.SourceUnavailable("503"), "bad": errors.QueryError("400")},
    )
    found = await _gather(
        source, _check("down", "down"), _check("bad", "bad"), _check("empty", "empty"), _check("none", "x")
    )
    assert found["down"] == model.Failed("unavailable")
    assert found["bad"] == model.Failed("query")
    assert found["empty"] == model.Missing("empty")
    assert found["none"] == model.Missing("empty")
    assert set(found) == {"down", "bad", "empty", "none"}


async def test_old_samples_are_stale() -> None:
    source = fakes.FakeMetricSource(values={"q": 1.0}, age=300.0)
    found = await _gather(source, _check("q", "q", max_staleness="60s"))
    assert found["q"] == model.Stale(300.0)


async def test_a_slow_source_times_out_as_failed() -> None:
    source = fakes.FakeMetricSource(values={"q": 1.0}, delay=5.0)
    found = await _gather(source, _check("q", "q"))
    assert found["q"] == model.Failed("timeout")


async def test_an_unknown_source_fails_its_check_only() -> None:
    source = fakes.FakeMetricSource(values={"q": 1.0})
    found = await _gather(source, _check("q", "q"), {**_check("elsewhere", "q"), "source": "nowhere"})
    assert found["elsewhere"] == model.Failed("unknown_source")
    assert isinstance(found["q"], model.Fresh)


@dataclass
class _BuggySource(fakes.FakeMetricSource):
    """A source that lets a foreign exception escape for one query, as a parser bug would."""

    async def query(self, query: str, at: float) -> model.Samples:
        if query == "buggy":
            raise AttributeError("'NoneType' object has no attribute 'get'")
        return await super().query(query, at)


async def test_a_source_bug_fails_its_check_only() -> None:
    source = _BuggySource(values={"q": 1.0})
    with capture_logs() as logs:
        found = await _gather(source, _check("buggy", "buggy"), _check("q", "q"))
    assert found["buggy"] == model.Failed("bug")
    assert isinstance(found["q"], model.Fresh)
    (logged,) = [e for e in logs if e["event"] == "source_bug"]
    assert logged["log_level"] == "error"
    assert logged["exc_info"] is True
