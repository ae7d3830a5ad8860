"""Reads check values from a Prometheus server's HTTP API, so policies can use any PromQL.

Every foreign exception is translated in one place (`sources.http.translated`), by what the engine does next:

    connect error, timeout, HTTP 5xx or 429, garbage body  -> errors.SourceUnavailable (back off)
    HTTP 400/422 (bad_data, execution), several series     -> errors.QueryError (fix the policy)

An empty vector, NaN and +/-Inf are *missing* data: they come back as no samples, never as 0.
Instant queries are evaluated at the tick's `at`; Prometheus then stamps each value with `at`
and drops series whose newest sample is older than its lookback delta (5 min by default, or at
once when a target vanishes and Prometheus writes a staleness marker), so a lost target is empty.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from autoscaler import errors, model
from autoscaler.sources import http

QUERY_ERROR_TYPES = frozenset({"bad_data", "execution"})
"""Prometheus `errorType`s that mean the query itself is wrong (HTTP 400 and 422)."""


def _check_status(status: int, body: Mapping[str, Any], url: str) -> None:
    """Raise the SourceError an API answer stands for; return for a successful one."""
    if status == 200 and body.get("status") == "success":
        return
    message = f"{url}: HTTP {status} {body.get('errorType', '')}: {body.get('error', '')}".rstrip(": ")
    if status in (400, 422) and body.get("errorType") in QUERY_ERROR_TYPES:
        raise errors.QueryError(message)
    raise errors.SourceUnavailable(message)


def _finite(point: Sequence[Any]) -> model.Sample | None:
    """A Sample from an API `[timestamp, "value"]` pair, or None when the value is NaN or Inf."""
    value = float(point[1])
    if not math.isfinite(value):
        return None
    return model.Sample(value=value, timestamp=float(point[0]))


def _series_points(data: Mapping[str, Any]) -> list[list[Sequence[Any]]]:
    """The points of every series in a `data` object, one list per series."""
    kind = data["resultType"]
    result = data["result"]
    if kind == "scalar":
        return [[result]]
    if kind == "vector":
        return [[series["value"]] for series in result]
    if kind == "matrix":
        return [series["values"] for series in result]
    raise errors.QueryError(f"unsupported result type {kind!r}: a check needs a number")


def parse_data(data: Mapping[str, Any], *, expect_single: bool, query: str) -> model.Samples:
    """Samples from an API `data` object; NaN and Inf dropped; QueryError on several series."""
    series = _series_points(data)
    if expect_single and len(series) > 1:
        raise errors.QueryError(f"{len(series)} series where one was expected: {query}")
    samples = (_finite(point) for points in series for point in points)
    return tuple(sorted((s for s in samples if s is not None), key=lambda s: s.timestamp))


THREAD_THRESHOLD = 256 * 1024
"""Answers larger than this (bytes) are decoded in a worker thread; `max_bytes` bounds that work."""


async def _decoded(raw: bytes) -> Any:
    """JSON from bytes, off the loop when large (a decode cannot be interrupted, but its input is
    bounded by the response limit)."""
    if len(raw) > THREAD_THRESHOLD:
        return await asyncio.to_thread(json.loads, raw)
    return json.loads(raw)


class PrometheusSource:
    """A MetricSource and HistorySource backed by one Prometheus server."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        bearer_token_file: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        tls_ca: str | None = None,
        tls_insecure: bool = False,
        expect_single: bool = True,
        max_bytes: int = http.DEFAULT_MAX_BYTES,
    ) -> None:
        """`url` is the server's base URL (e.g. http://127.0.0.1:9090); `timeout` is per request,
        decoding included; an answer larger than `max_bytes` fails the query."""
        self.url = url.rstrip("/")
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.expect_single = expect_single
        self._bearer_token_file = bearer_token_file
        self._basic = http.basic_authorization(basic_auth) if basic_auth is not None else None
        self._ssl = http.tls(tls_ca, tls_insecure)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The one session, created on first use so that it belongs to the running loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                raise_for_status=False,
            )
        return self._session

    def _headers(self) -> dict[str, str]:
        """Request headers; the bearer token is re-read each time so that rotation just works."""
        if self._bearer_token_file is None:
            return {"Authorization": self._basic} if self._basic else {}
        return {"Authorization": http.bearer_authorization(self._bearer_token_file)}

    async def _api(self, path: str, form: dict[str, str]) -> Mapping[str, Any]:
        """POST a form to an API endpoint and return its `data` object."""
        url = f"{self.url}{path}"
        with http.translated(url):
            form["timeout"] = f"{max(int(self.timeout * 1000), 1)}ms"
            async with asyncio.timeout(self.timeout):
                response = await self._client().post(url, data=form, headers=self._headers(), ssl=self._ssl)
                async with response:
                    raw = await http.read_body(response, self.max_bytes, url)
                body = await _decoded(raw)
            if not isinstance(body, dict):  # an empty 401/502 from a proxy, `null`, a bare string
                raise errors.SourceUnavailable(f"{url}: HTTP {response.status}: not an API answer")
            _check_status(response.status, body, url)
            data: Mapping[str, Any] = body["data"]
            return data

    async def query(self, query: str, at: float) -> model.Samples:
        """Samples of an instant query evaluated at `at`; empty when there is no usable value."""
        data = await self._api("/api/v1/query", {"query": query, "time": repr(at)})
        with http.translated(self.url):
            return parse_data(data, expect_single=self.expect_single, query=query)

    async def query_range(self, query: str, start: float, end: float, step: float) -> model.Samples:
        """Samples of a range query, oldest first; gaps and NaN points are simply absent."""
        form = {"query": query, "start": repr(start), "end": repr(end), "step": repr(step)}
        data = await self._api("/api/v1/query_range", form)
        with http.translated(self.url):
            return parse_data(data, expect_single=self.expect_single, query=query)

    async def close(self) -> None:
        """Close the HTTP session; the source may be used again afterwards (a new session opens)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
