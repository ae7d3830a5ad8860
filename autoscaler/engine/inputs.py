"""Fetching a group's checks for one tick: concurrent, de-duplicated, timed out, and classified.

Every check of a tick is asked at the same instant (`now`), identical (source, query) pairs run once,
and whatever goes wrong becomes a value the core understands: an error is `Failed(error_class)`, an
empty answer `Missing`, an old one `Stale`. Nothing here raises for a bad source: an exception a
source should have translated (a bug) fails its check as `Failed("bug")`, logged with its traceback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from autoscaler import errors, model, sources
from autoscaler.decide import strategies
from autoscaler.policy import spec

log = structlog.get_logger("autoscaler.engine")


class QueryObserver(Protocol):
    """What the fetcher reports; `telemetry.metrics.Metrics` has these methods."""

    def queried(
        self, group: str, check: str, source: str, seconds: float, error_class: str | None = None
    ) -> None:
        """One query finished."""
        ...

    def check_input(self, group: str, check: str, check_input: model.CheckInput) -> None:
        """One check's input was classified."""
        ...


@dataclass(frozen=True, slots=True)
class _Answer:
    """The outcome of one distinct query."""

    samples: model.Samples
    error_class: str | None
    seconds: float


async def _ask(source: sources.MetricSource | None, query: str, at: float, seconds: float) -> _Answer:
    started = time.monotonic()
    if source is None:
        return _Answer((), "unknown_source", 0.0)
    try:
        async with asyncio.timeout(seconds):
            samples = await source.query(query, at)
    except TimeoutError:
        return _Answer((), "timeout", time.monotonic() - started)
    except errors.SourceError as exc:
        return _Answer((), exc.error_class, time.monotonic() - started)
    except Exception:
        log.exception("source_bug", query=query, note="the check counts as failed")
        return _Answer((), "bug", time.monotonic() - started)
    return _Answer(samples, None, time.monotonic() - started)


def classify(check: spec.Check, answer: _Answer, now: float) -> model.CheckInput:
    """The input kind of one answer: Failed, Missing, Stale or Fresh."""
    if answer.error_class is not None:
        return model.Failed(answer.error_class)
    if not answer.samples:
        return model.Missing("empty")
    age = now - max(sample.timestamp for sample in answer.samples)
    if age > check.max_staleness:
        return model.Stale(age)
    return model.Fresh(answer.samples)


async def gather(
    policy: spec.GroupPolicy,
    known: Mapping[str, sources.MetricSource],
    now: float,
    query_timeout: float,
    observer: QueryObserver,
) -> dict[str, model.CheckInput]:
    """Every check's input for the tick at `now`; checks that read no metric get none."""
    wanted = [c for c in policy.checks if strategies.needs_samples(c.strategy)]
    keys = list(dict.fromkeys((c.source, c.query) for c in wanted))
    answers = await asyncio.gather(*(_ask(known.get(s), q, now, query_timeout) for s, q in keys))
    by_key = dict(zip(keys, answers, strict=True))
    inputs: dict[str, model.CheckInput] = {}
    for check in wanted:
        answer = by_key[(check.source, check.query)]
        observer.queried(policy.group, check.name, check.source, answer.seconds, answer.error_class)
        inputs[check.name] = classify(check, answer, now)
        observer.check_input(policy.group, check.name, inputs[check.name])
    return inputs
