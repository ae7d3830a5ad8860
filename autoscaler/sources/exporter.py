"""Reads check values straight from an exporter's /metrics page, for hosts without a Prometheus.

The query language is deliberately tiny:

    name{label="v", other=~"re.*"}         sum of the matching series (a gauge, or a counter's total)
    rate(name{label="v"})                  per-second increase since the newest earlier scrape
                                           at least `min_rate_window` old, summed over series;
                                           a counter reset counts the new value as the
                                           increase, as Prometheus does

No matching series, NaN, or a rate without an earlier scrape in the window is *missing* (no
samples), never 0. One scrape serves every query asked for the same instant, so the checks of one
tick share it; several groups ticking a moment apart share the source, so a rate is never taken
over the milliseconds between their scrapes (that reads as a fresh 0 or as noise).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import math
import re
import threading
from collections.abc import Callable, Mapping

import aiohttp
from prometheus_client import parser

from autoscaler import errors, model
from autoscaler.sources import http

_QUERY = re.compile(
    r"^\s*(?:(?P<rate>rate)\s*\(\s*)?(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?P<labels>.*)\})?\s*"
)
_MATCHER = re.compile(
    r'\s*(?P<label>[a-zA-Z_]\w*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*(?:,|$)'
)
THREAD_THRESHOLD = 64 * 1024
"""Payloads larger than this (bytes) are parsed in a worker thread to keep the loop responsive."""

SeriesKey = tuple[tuple[str, str], ...]
Scrape = dict[str, dict[SeriesKey, float]]
"""One parsed scrape: sample name -> series labels -> value."""


@dataclasses.dataclass(frozen=True, slots=True)
class Selector:
    """A parsed query: one sample name, label matchers, and whether to take a rate."""

    name: str
    matchers: tuple[Callable[[Mapping[str, str]], bool], ...]
    rate: bool

    def series(self, scrape: Scrape) -> dict[SeriesKey, float]:
        """The series of `scrape` this selector matches."""
        candidates = scrape.get(self.name, {})
        return {key: v for key, v in candidates.items() if all(m(dict(key)) for m in self.matchers)}


def _matcher(label: str, op: str, value: str) -> Callable[[Mapping[str, str]], bool]:
    """One label matcher with PromQL semantics (a missing label reads as the empty string)."""
    text = value.encode().decode("unicode_escape")
    if op in ("=~", "!~"):
        pattern = re.compile(text)
        wanted = op == "=~"
        return lambda labels: (pattern.fullmatch(labels.get(label, "")) is not None) == wanted
    wanted = op == "="
    return lambda labels: (labels.get(label, "") == text) == wanted


def _matchers(text: str) -> tuple[Callable[[Mapping[str, str]], bool], ...]:
    """Parse `label="v", ...` into matchers; QueryError on anything else."""
    found, position = [], 0
    while position < len(text.rstrip()):
        match = _MATCHER.match(text, position)
        if match is None:
            raise errors.QueryError(f"cannot parse label matchers at {text[position:]!r}")
        found.append(_matcher(match["label"], match["op"], match["value"]))
        position = match.end()
    return tuple(found)


def parse_query(query: str) -> Selector:
    """Parse `name{...}` or `rate(name{...})`; QueryError when the query is something else."""
    match = _QUERY.match(query)
    rest = query[match.end() :] if match else query
    if match is None or rest.strip() != (")" if match["rate"] else ""):
        raise errors.QueryError(f"not a metric selector or rate(selector): {query!r}")
    try:
        matchers = _matchers(match["labels"] or "")
    except re.error as exc:
        raise errors.QueryError(f"bad regular expression in {query!r}: {exc}") from exc
    return Selector(name=match["name"], matchers=matchers, rate=match["rate"] is not None)


class ParseAbandoned(Exception):
    """The scrape's deadline passed while its exposition was being parsed."""


def parse_exposition(text: str, stop: threading.Event | None = None) -> Scrape:
    """Index a Prometheus text exposition by sample name and label set.

    `stop` is checked between metric families: once it is set (the scrape timed out or was
    cancelled) the parse ends there, so no worker thread keeps parsing an answer nobody awaits.
    """
    scrape: Scrape = {}
    for family in parser.text_string_to_metric_families(text):
        if stop is not None and stop.is_set():
            raise ParseAbandoned
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            scrape.setdefault(sample.name, {})[key] = float(sample.value)
    return scrape


def increase(previous: Mapping[SeriesKey, float], current: Mapping[SeriesKey, float]) -> float | None:
    """Summed counter increase over series seen in both scrapes; None when none was seen twice."""
    both = [key for key in current if key in previous]
    if not both:
        return None
    return sum(current[k] - previous[k] if current[k] >= previous[k] else current[k] for k in both)


def _retrieve(task: asyncio.Task[_Taken]) -> None:
    """Mark a shared scrape's error as seen, even when every waiter was cancelled meanwhile."""
    if not task.cancelled():
        task.exception()


@dataclasses.dataclass(frozen=True, slots=True)
class _Taken:
    """A scrape and the instant it stands for."""

    at: float
    scrape: Scrape


class ExporterSource:
    """A MetricSource that scrapes one exporter directly, at most once per instant."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        bearer_token_file: str | None = None,
        tls_ca: str | None = None,
        tls_insecure: bool = False,
        min_rate_window: float = 10.0,
        max_bytes: int = http.DEFAULT_MAX_BYTES,
    ) -> None:
        """`url` is the exporter's full metrics URL (e.g. http://127.0.0.1:9100/metrics).

        A rate spans at least `min_rate_window` seconds (as long as the checks' intervals need).
        A page larger than `max_bytes` fails the scrape; `timeout` bounds the fetch and the parse.
        """
        self.url = url
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.min_rate_window = min_rate_window
        self._bearer_token_file = bearer_token_file
        self._ssl = http.tls(tls_ca, tls_insecure)
        self._session: aiohttp.ClientSession | None = None
        self._pending: tuple[float, asyncio.Task[_Taken]] | None = None
        self._history: collections.deque[_Taken] = collections.deque()

    def _client(self) -> aiohttp.ClientSession:
        """The one session, created on first use so that it belongs to the running loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    def _headers(self) -> dict[str, str]:
        """Ask for the classic text format; add the bearer token (re-read for rotation)."""
        headers = {"Accept": "text/plain;version=0.0.4"}
        if self._bearer_token_file is not None:
            headers["Authorization"] = http.bearer_authorization(self._bearer_token_file)
        return headers

    async def _fetch(self, at: float) -> _Taken:
        """Scrape and parse once, both within the timeout; big payloads are parsed off the loop,
        and the parse stops as soon as the timeout passes (or the scrape is cancelled)."""
        stop = threading.Event()
        with http.translated(self.url, "exposition"):
            try:
                async with asyncio.timeout(self.timeout):
                    response = await self._client().get(self.url, headers=self._headers(), ssl=self._ssl)
                    async with response:
                        if response.status != 200:
                            raise errors.SourceUnavailable(f"{self.url}: HTTP {response.status}")
                        body = await http.read_body(response, self.max_bytes, self.url)
                    text = body.decode(response.get_encoding() if response.charset else "utf-8", "replace")
                    if len(text) > THREAD_THRESHOLD:
                        return _Taken(at, await asyncio.to_thread(parse_exposition, text, stop))
                    return _Taken(at, parse_exposition(text))
            finally:
                stop.set()

    async def scrape(self, at: float) -> Scrape:
        """The scrape for instant `at`, shared by every query for that instant (and concurrent ones)."""
        newest = self._history[-1] if self._history else None
        if newest is not None and newest.at == at:
            return newest.scrape
        if self._pending is None or self._pending[0] != at:
            self._pending = (at, asyncio.ensure_future(self._fetch(at)))
            self._pending[1].add_done_callback(_retrieve)
        task = self._pending[1]
        try:
            taken = await asyncio.shield(task)
        finally:
            if self._pending is not None and self._pending[1] is task and task.done():
                self._pending = None
        self._remember(taken)
        return taken.scrape

    def _remember(self, taken: _Taken) -> None:
        """Keep the scrapes a rate may still start from (newest last): those younger than two
        windows, and the newest one older than that; older ones are dropped. Two windows, so a
        query for an instant a little older than the newest scrape (a slower group's scrape that
        finished late) still finds its base."""
        if self._history and taken.at <= self._history[-1].at:
            return
        self._history.append(taken)
        horizon = 2 * self.min_rate_window
        while len(self._history) > 1 and taken.at - self._history[1].at >= horizon:
            self._history.popleft()

    async def query(self, query: str, at: float) -> model.Samples:
        """The summed value (or rate) of the selector at `at`; empty when unknown."""
        selector = parse_query(query)
        current = selector.series(await self.scrape(at))
        if not selector.rate:
            total = sum(current.values())
            return (model.Sample(total, at),) if current and math.isfinite(total) else ()
        return self._rate(selector, current, at)

    def _rate(self, selector: Selector, current: Mapping[SeriesKey, float], at: float) -> model.Samples:
        """Per-second increase since the newest scrape at least `min_rate_window` before `at`."""
        earlier = [t for t in self._history if at - t.at >= self.min_rate_window]
        if not earlier:
            return ()
        previous = earlier[-1]
        grown = increase(selector.series(previous.scrape), current)
        if grown is None or not math.isfinite(grown):
            return ()
        return (model.Sample(grown / (at - previous.at), at),)

    async def close(self) -> None:
        """Close the HTTP session and forget the scrapes."""
        if self._pending is not None:
            self._pending[1].cancel()
            with contextlib.suppress(asyncio.CancelledError, errors.SourceError):
                await self._pending[1]
            self._pending = None
        self._history.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
