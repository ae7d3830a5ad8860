"""Hostile metric endpoints: oversized answers fail the query (never held whole), and a parse that
outlives its scrape's timeout stops instead of running on in a worker thread."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from autoscaler import errors
from autoscaler.sources import exporter, prometheus

LIMIT = 1024 * 1024


async def huge_chunked(request: web.BaseRequest) -> web.StreamResponse:
    """20 MB of valid exposition, streamed without a Content-Length."""
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    line = b"".join(b'm{i="%d"} 1\n' % i for i in range(1000))
    for _ in range(20 * 1024 * 1024 // len(line)):
        await response.write(line)
    await response.write_eof()
    return response


async def huge_declared(request: web.BaseRequest) -> web.Response:
    return web.Response(body=b"{" + b" " * (2 * LIMIT) + b"}", content_type="application/json")


async def test_an_exporter_answering_20_mb_fails_the_scrape() -> None:
    async with RawTestServer(huge_chunked, host="127.0.0.1") as server:
        source = exporter.ExporterSource(str(server.make_url("/metrics")), timeout=10.0, max_bytes=LIMIT)
        try:
            with pytest.raises(errors.SourceUnavailable, match=r"limits\.response_bytes"):
                await source.query("m", at=1.0)
        finally:
            await source.close()


async def test_prometheus_answering_more_than_the_limit_fails_the_query() -> None:
    async with RawTestServer(huge_declared, host="127.0.0.1") as server:
        source = prometheus.PrometheusSource(str(server.make_url("")), timeout=10.0, max_bytes=LIMIT)
        try:
            with pytest.raises(errors.SourceUnavailable, match=r"limits\.response_bytes"):
                await source.query("up", at=1.0)
        finally:
            await source.close()


def test_a_parse_stops_at_the_next_family_once_its_scrape_is_abandoned() -> None:
    page = "".join(f"# TYPE f{i} gauge\nf{i} 1\n" for i in range(10))
    stop = threading.Event()
    stop.set()
    with pytest.raises(exporter.ParseAbandoned):
        exporter.parse_exposition(page, stop)


async def test_a_scrape_that_times_out_leaves_no_parse_running(monkeypatch: pytest.MonkeyPatch) -> None:
    families = "".join(
        f"# TYPE f{i} gauge\n" + "".join(f'f{i}{{l="{j}"}} 1\n' for j in range(50)) for i in range(3000)
    )
    parse = exporter.parse_exposition
    ended = threading.Event()

    def watched(text: str, stop: threading.Event | None = None) -> exporter.Scrape:
        try:
            return parse(text, stop)
        finally:
            ended.set()

    monkeypatch.setattr(exporter, "parse_exposition", watched)

    async def big(request: web.BaseRequest) -> web.Response:
        return web.Response(text=families, content_type="text/plain")

    async with RawTestServer(big, host="127.0.0.1") as server:
        source = exporter.ExporterSource(str(server.make_url("/metrics")), timeout=0.2, max_bytes=64 * LIMIT)
        try:
            with pytest.raises(errors.SourceUnavailable, match="timed out"):
                await source.query("f0", at=1.0)
            assert await asyncio.to_thread(ended.wait, 1.0)  # a full parse takes several seconds
        finally:
            await source.close()
