"""The webmail load generator: a deterministic office day, served over real HTTP, readable by our sources."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.demo import loadgen
from autoscaler.sources import exporter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def at_hour(hour: float, **kwargs: float) -> tuple[loadgen.LoadGenerator, FakeClock]:
    clock = FakeClock()
    gen = loadgen.LoadGenerator(day_seconds=240.0, peak_sessions=400, clock=clock, **kwargs)
    clock.now += hour * 10.0  # 240 s per day: 10 s per hour
    return gen, clock


@pytest.mark.parametrize(
    ("earlier", "later"),
    [(3.0, 8.0), (7.5, 8.25), (8.25, 9.0), (12.25, 11.0), (12.25, 14.0), (19.0, 16.0), (22.0, 17.0)],
)
def test_office_day_shape(earlier: float, later: float) -> None:
    assert loadgen.office_load(earlier) < loadgen.office_load(later)


def test_night_is_low_and_morning_peaks() -> None:
    assert loadgen.office_load(3.0) == pytest.approx(0.05)
    assert loadgen.office_load(9.0) == pytest.approx(1.0)
    assert loadgen.office_load(24.0) == loadgen.office_load(0.0)


def test_time_is_compressed_and_deterministic() -> None:
    gen, clock = at_hour(7.5)
    assert gen.current_day_time() == datetime.time(7, 30)
    assert gen.sessions() == pytest.approx(60.0)
    clock.now += 15.0  # 1.5 simulated hours
    assert gen.current_day_time() == datetime.time(9, 0)
    assert gen.sessions() == pytest.approx(400.0)
    clock.now += 240.0  # a whole day later, same time of day
    assert gen.current_day_time() == datetime.time(9, 0)


def test_start_hour_offsets_the_day() -> None:
    gen, _ = at_hour(0.0, start_hour=12.25)
    assert gen.current_day_time() == datetime.time(12, 15)


def test_requests_counter_integrates_sessions_over_real_time() -> None:
    gen, clock = at_hour(10.0)  # flat-ish plateau: 0.98 * 400 sessions
    first = gen.requests_total()
    clock.now += 2.0
    second = gen.requests_total()
    expected = (gen.sessions() + 400 * loadgen.office_load(10.0)) / 2 * 2.0 * 0.5
    assert second - first == pytest.approx(expected, rel=0.02)
    assert gen.requests_total() == second  # no time passed, no requests


@pytest.fixture
async def served() -> AsyncIterator[tuple[loadgen.LoadGenerator, FakeClock, str]]:
    gen, clock = at_hour(10.0)
    url = await gen.start()
    yield gen, clock, url
    await gen.stop()


async def test_serves_valid_exposition(served: tuple[loadgen.LoadGenerator, FakeClock, str]) -> None:
    _, _, url = served
    assert url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["webmail_active_sessions"].type == "gauge"
    assert families["webmail_requests"].type == "counter"
    assert families["webmail_day_time_hours"].samples[0].value == pytest.approx(10.0)


async def test_state_endpoint(served: tuple[loadgen.LoadGenerator, FakeClock, str]) -> None:
    _, _, url = served
    async with aiohttp.ClientSession() as session, session.get(url.replace("/metrics", "/state")) as response:
        state = await response.json()
    assert state["day_time"] == "10:00"
    assert state["sessions"] == pytest.approx(400 * loadgen.office_load(10.0))


async def test_exporter_source_reads_sessions_and_request_rate(
    served: tuple[loadgen.LoadGenerator, FakeClock, str],
) -> None:
    gen, clock, url = served
    source = exporter.ExporterSource(url, timeout=5.0, min_rate_window=1.0)
    try:
        (sessions,) = await source.query("webmail_active_sessions", at=clock.now)
        assert sessions.value == gen.sessions()
        assert await source.query("rate(webmail_requests_total)", at=clock.now) == ()
        clock.now += 1.0
        (rate,) = await source.query("rate(webmail_requests_total)", at=clock.now)
        assert rate.value == pytest.approx(gen.sessions() * 0.5, rel=0.02)
    finally:
        await source.close()


async def test_stop_is_idempotent() -> None:
    gen = loadgen.LoadGenerator()
    await gen.start()
    await gen.stop()
    await gen.stop()
