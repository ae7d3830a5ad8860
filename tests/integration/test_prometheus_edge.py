"""PrometheusSource against a real Prometheus server scraping an exporter that this test serves."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from autoscaler import errors, model
from autoscaler.demo import loadgen
from autoscaler.sources import prometheus
from tests.integration import prometheus_env

pytestmark = pytest.mark.integration_prometheus
DEADLINE = 30.0


@dataclasses.dataclass
class WebmailExporter:
    """A tiny exporter: a fixed gauge and a counter that grows by 10 per scrape."""

    sessions: float = 42.0
    requests: float = 0.0

    async def handle(self, request: web.BaseRequest) -> web.Response:
        self.requests += 10
        text = (
            "# TYPE webmail_active_sessions gauge\n"
            f"webmail_active_sessions {self.sessions}\n"
            "# TYPE webmail_requests_total counter\n"
            f"webmail_requests_total {self.requests}\n"
        )
        return web.Response(text=text, content_type="text/plain")


@pytest.fixture
async def source(
    prometheus_server: prometheus_env.PrometheusServer,
) -> AsyncIterator[prometheus.PrometheusSource]:
    src = prometheus.PrometheusSource(prometheus_server.url, timeout=5.0)
    yield src
    await src.close()


async def served(
    server: prometheus_env.PrometheusServer, name: str, exporter: WebmailExporter
) -> tuple[RawTestServer, str]:
    """Serve `exporter` on loopback and have Prometheus scrape it with label test=<name>."""
    raw = RawTestServer(exporter.handle, host="127.0.0.1")
    await raw.start_server()
    target = f"127.0.0.1:{raw.port}"
    server.set_targets(name, [target], {"test": name})
    await server.wait_for_target(target, "up")
    return raw, target


async def poll(
    ask: Callable[[], Awaitable[model.Samples]], done: Callable[[model.Samples], bool]
) -> list[model.Samples]:
    """Ask until `done` holds for an answer (deadline DEADLINE); returns every answer seen."""
    answers: list[model.Samples] = []
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        answers.append(await ask())
        if done(answers[-1]):
            return answers
        await prometheus_env.asyncio.sleep(0.2)
    pytest.fail(f"condition not met within {DEADLINE}s; last answers: {answers[-5:]}")


async def test_instant_query_reads_the_scraped_value(
    prometheus_server: prometheus_env.PrometheusServer, source: prometheus.PrometheusSource
) -> None:
    raw, _ = await served(prometheus_server, "instant", WebmailExporter())
    try:
        query = 'webmail_active_sessions{test="instant"}'
        answers = await poll(lambda: source.query(query, at=time.time()), bool)
        (sample,) = answers[-1]
        assert sample.value == 42.0
        assert abs(sample.timestamp - time.time()) < 5.0
    finally:
        prometheus_server.remove_targets("instant")
        await raw.close()


async def test_range_query_returns_points_oldest_first(
    prometheus_server: prometheus_env.PrometheusServer, source: prometheus.PrometheusSource
) -> None:
    raw, _ = await served(prometheus_server, "range", WebmailExporter())
    try:
        query = 'webmail_requests_total{test="range"}'
        start = time.time()

        async def ask() -> model.Samples:
            return await source.query_range(query, start=start, end=time.time(), step=1.0)

        answers = await poll(ask, lambda samples: len(samples) >= 3)
        values = [s.value for s in answers[-1]]
        stamps = [s.timestamp for s in answers[-1]]
        assert stamps == sorted(stamps)
        assert values == sorted(values)
        assert values[-1] > values[0]
    finally:
        prometheus_server.remove_targets("range")
        await raw.close()


async def test_vanished_target_reads_as_missing_never_zero(
    prometheus_server: prometheus_env.PrometheusServer, source: prometheus.PrometheusSource
) -> None:
    raw, target = await served(prometheus_server, "vanish", WebmailExporter())
    query = 'webmail_active_sessions{test="vanish"}'
    try:
        await poll(lambda: source.query(query, at=time.time()), bool)
        await raw.close()
        await prometheus_server.wait_for_target(target, "down")
        answers = await poll(lambda: source.query(query, at=time.time()), lambda samples: samples == ())
        assert all(sample.value == 42.0 for answer in answers for sample in answer)
    finally:
        prometheus_server.remove_targets("vanish")


async def test_nan_from_the_server_is_missing(source: prometheus.PrometheusSource) -> None:
    assert await source.query("vector(0) / 0", at=time.time()) == ()


async def test_scalar_from_the_server(source: prometheus.PrometheusSource) -> None:
    now = time.time()
    (sample,) = await source.query("scalar(vector(3))", at=now)
    assert sample.value == 3.0
    assert sample.timestamp == pytest.approx(now, abs=0.001)


async def test_syntax_error_is_a_query_error(source: prometheus.PrometheusSource) -> None:
    with pytest.raises(errors.QueryError, match="bad_data"):
        await source.query("sum(", at=time.time())


async def test_several_series_is_a_query_error(source: prometheus.PrometheusSource) -> None:
    with pytest.raises(errors.QueryError, match="series"):
        await source.query('label_replace(vector(1), "a", "x", "", "") or vector(2)', at=time.time())


async def test_demo_load_through_prometheus(
    prometheus_server: prometheus_env.PrometheusServer, source: prometheus.PrometheusSource
) -> None:
    """The demo's load exporter, scraped by Prometheus, gives a request rate the checks can use."""
    gen = loadgen.LoadGenerator(day_seconds=240.0, start_hour=10.0)
    url = await gen.start()
    target = url.removeprefix("http://").removesuffix("/metrics")
    prometheus_server.set_targets("demo", [target], {"test": "demo"})
    try:
        await prometheus_server.wait_for_target(target, "up")
        query = 'sum(irate(webmail_requests_total{test="demo"}[5s]))'
        answers = await poll(lambda: source.query(query, at=time.time()), bool)
        (rate,) = answers[-1]
        assert rate.value == pytest.approx(gen.sessions() * gen.requests_per_session, rel=0.25)
    finally:
        prometheus_server.remove_targets("demo")
        await gen.stop()
