"""ExporterSource against a real aiohttp server whose exposition the test rewrites between scrapes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from autoscaler import errors, model
from autoscaler.sources import exporter

PAGE = """\
# HELP webmail_active_sessions Sessions open right now.
# TYPE webmail_active_sessions gauge
webmail_active_sessions{pool="imap",site="a"} 10
webmail_active_sessions{pool="imap",site="b"} 5
webmail_active_sessions{pool="smtp",site="a"} 2.5
# HELP webmail_requests_total Requests served.
# TYPE webmail_requests_total counter
webmail_requests_total{site="a"} {a}
webmail_requests_total{site="b"} {b}
# TYPE broken gauge
broken NaN
"""


@dataclasses.dataclass
class Exporter:
    """A scrape target whose counters the test sets; counts scrapes."""

    counters: dict[str, float] = dataclasses.field(default_factory=lambda: {"a": 100.0, "b": 50.0})
    status: int = 200
    delay: float = 0.0
    scrapes: int = 0
    extra: str = ""

    async def handle(self, request: web.BaseRequest) -> web.Response:
        self.scrapes += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        text = PAGE.replace("{a}", repr(self.counters["a"])).replace("{b}", repr(self.counters["b"]))
        return web.Response(status=self.status, text=text + self.extra, content_type="text/plain")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Exporter, exporter.ExporterSource]]:
    target = Exporter()
    async with RawTestServer(target.handle, host="127.0.0.1") as server:
        source = exporter.ExporterSource(str(server.make_url("/metrics")), timeout=2.0)
        yield target, source
        await source.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("webmail_active_sessions", 17.5),
        ('webmail_active_sessions{pool="imap"}', 15.0),
        ('webmail_active_sessions{pool="imap", site="b"}', 5.0),
        ('webmail_active_sessions{site!="a"}', 5.0),
        ('webmail_active_sessions{pool=~"i.*"}', 15.0),
        ('webmail_active_sessions{pool!~"i.*"}', 2.5),
        ('webmail_requests_total{site="a"}', 100.0),
    ],
)
async def test_selector_sums_matching_series(
    served: tuple[Exporter, exporter.ExporterSource], query: str, expected: float
) -> None:
    assert await served[1].query(query, at=10.0) == (model.Sample(expected, 10.0),)


@pytest.mark.parametrize("query", ["absent_metric", 'webmail_active_sessions{pool="pop3"}', "broken"])
async def test_nothing_usable_is_empty_never_zero(
    served: tuple[Exporter, exporter.ExporterSource], query: str
) -> None:
    assert await served[1].query(query, at=10.0) == ()


async def test_one_scrape_per_instant_shared_by_concurrent_checks(
    served: tuple[Exporter, exporter.ExporterSource],
) -> None:
    target, source = served
    target.delay = 0.05
    results = await asyncio.gather(
        source.query("webmail_active_sessions", at=10.0),
        source.query('rate(webmail_requests_total{site="a"})', at=10.0),
        source.query("webmail_requests_total", at=10.0),
    )
    assert target.scrapes == 1
    assert results[1] == ()  # a rate needs two scrapes
    await source.query("webmail_active_sessions", at=25.0)
    assert target.scrapes == 2


async def test_rate_between_consecutive_scrapes(served: tuple[Exporter, exporter.ExporterSource]) -> None:
    target, source = served
    assert await source.query("rate(webmail_requests_total)", at=10.0) == ()
    target.counters = {"a": 130.0, "b": 80.0}
    assert await source.query("rate(webmail_requests_total)", at=20.0) == (model.Sample(6.0, 20.0),)
    assert await source.query('rate(webmail_requests_total{site="b"})', at=20.0) == (model.Sample(3.0, 20.0),)


async def test_checks_ticking_a_moment_apart_share_the_rate_window(
    served: tuple[Exporter, exporter.ExporterSource],
) -> None:
    target, source = served
    await source.query("rate(webmail_requests_total)", at=10.0)
    target.counters = {"a": 130.0, "b": 80.0}
    assert await source.query("rate(webmail_requests_total)", at=20.0) == (model.Sample(6.0, 20.0),)
    target.counters = {"a": 131.0, "b": 81.0}  # another group, 0.2 s later: still over ~10 s
    [sample] = await source.query("rate(webmail_requests_total)", at=20.2)
    assert sample.value == pytest.approx(62.0 / 10.2)


async def test_rate_without_a_scrape_old_enough_is_empty(
    served: tuple[Exporter, exporter.ExporterSource],
) -> None:
    target, source = served
    await source.query("rate(webmail_requests_total)", at=10.0)
    target.counters = {"a": 130.0, "b": 80.0}
    assert await source.query("rate(webmail_requests_total)", at=15.0) == ()


async def test_rate_of_a_group_evaluated_every_15_minutes(
    served: tuple[Exporter, exporter.ExporterSource],
) -> None:
    target, source = served
    await source.query("rate(webmail_requests_total)", at=0.0)
    target.counters = {"a": 1000.0, "b": 500.0}
    assert await source.query("rate(webmail_requests_total)", at=900.0) == (model.Sample(1.5, 900.0),)


async def test_only_the_scrapes_a_rate_can_start_from_are_kept(
    served: tuple[Exporter, exporter.ExporterSource],
) -> None:
    _, source = served
    for second in range(60):  # many groups ticking a second apart
        await source.query("rate(webmail_requests_total)", at=float(second))
    kept = [taken.at for taken in source._history]
    assert kept[0] == 39.0  # the newest scrape at least two windows old ...
    assert kept[1:] == [float(s) for s in range(40, 60)]  # ... and the younger ones


async def test_a_scrape_that_finishes_late_still_finds_its_base(
    served: tuple[Exporter, exporter.ExporterSource],
) -> None:
    target, source = served
    for at in (0.0, 9.5, 20.0):  # another group's scrape for 20 lands before this one's for 19
        await source.query("rate(webmail_requests_total)", at=at)
    target.counters = {"a": 119.0, "b": 69.0}
    [sample] = await source.query("rate(webmail_requests_total)", at=19.0)
    assert sample.value == pytest.approx(38.0 / 19.0)  # from the scrape at 0


async def test_rate_counter_reset_counts_new_value(served: tuple[Exporter, exporter.ExporterSource]) -> None:
    target, source = served
    await source.query("rate(webmail_requests_total)", at=10.0)
    target.counters = {"a": 20.0, "b": 70.0}  # a restarted: +20; b grew: +20
    assert await source.query("rate(webmail_requests_total)", at=20.0) == (model.Sample(4.0, 20.0),)


async def test_series_new_in_the_second_scrape_is_ignored(
    served: tuple[Exporter, exporter.ExporterSource],
) -> None:
    target, source = served
    await source.query("rate(webmail_requests_total)", at=10.0)
    target.extra = 'webmail_requests_total{site="c"} 1000\n'
    target.counters = {"a": 110.0, "b": 50.0}
    assert await source.query("rate(webmail_requests_total)", at=20.0) == (model.Sample(1.0, 20.0),)


@pytest.mark.parametrize(
    "query",
    ["sum(webmail_active_sessions)", "rate(x", 'x{a="b"', "x{a=b}", 'x{a=~"("}', "x y", "1 + 1"],
)
def test_unsupported_queries_are_query_errors(query: str) -> None:
    with pytest.raises(errors.QueryError):
        exporter.parse_query(query)


async def test_http_error_is_unavailable(served: tuple[Exporter, exporter.ExporterSource]) -> None:
    served[0].status = 503
    with pytest.raises(errors.SourceUnavailable, match="503"):
        await served[1].query("webmail_active_sessions", at=1.0)


async def test_malformed_exposition_is_unavailable(served: tuple[Exporter, exporter.ExporterSource]) -> None:
    served[0].extra = "this is { not an exposition\n"
    with pytest.raises(errors.SourceUnavailable, match="malformed") as caught:
        await served[1].query("webmail_active_sessions", at=1.0)
    assert caught.value.__cause__ is not None


async def test_failed_scrape_is_retried_at_the_same_instant(
    served: tuple[Exporter, exporter.ExporterSource],
) -> None:
    target, source = served
    target.status = 500
    with pytest.raises(errors.SourceUnavailable):
        await source.query("webmail_active_sessions", at=1.0)
    target.status = 200
    assert await source.query("webmail_active_sessions", at=1.0) == (model.Sample(17.5, 1.0),)


async def test_timeout_is_unavailable(served: tuple[Exporter, exporter.ExporterSource]) -> None:
    target, _ = served
    target.delay = 1.0
    async with RawTestServer(target.handle, host="127.0.0.1") as server:
        source = exporter.ExporterSource(str(server.make_url("/metrics")), timeout=0.1)
        with pytest.raises(errors.SourceUnavailable, match="timed out"):
            await source.query("webmail_active_sessions", at=1.0)
        await source.close()


async def test_large_payload_is_parsed(served: tuple[Exporter, exporter.ExporterSource]) -> None:
    target, source = served
    lines = [f'filler{{i="{i}"}} 1' for i in range(5000)]
    target.extra = "# TYPE filler gauge\n" + "\n".join(lines) + "\n"
    assert await source.query("filler", at=1.0) == (model.Sample(5000.0, 1.0),)


async def test_cancelled_waiter_does_not_cancel_the_shared_scrape(
    served: tuple[Exporter, exporter.ExporterSource],
) -> None:
    target, source = served
    target.delay = 0.2
    first = asyncio.ensure_future(source.query("webmail_active_sessions", at=5.0))
    second = asyncio.ensure_future(source.query('webmail_active_sessions{pool="imap"}', at=5.0))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == (model.Sample(15.0, 5.0),)
    assert first.cancelled()
    assert target.scrapes == 1
