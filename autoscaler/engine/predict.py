"""Predictive scaling in the daemon: learn from range-query history, forecast, and score the forecast.

History is fetched at a modest cadence (a range query over days is not cheap), the forecast is the
pure `autoscaler.forecast` function, and its result is a floor passed to the core in active mode
only; in shadow mode it is exported with its measured error and never acts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol, cast

import structlog

from autoscaler import errors, forecast, model, sources
from autoscaler.forecast import shadow
from autoscaler.policy import spec

MAX_POINTS = 10_000
"""Prometheus refuses range queries of more than 11,000 points per series."""
log = structlog.get_logger("autoscaler.engine")


class ForecastObserver(Protocol):
    """What the forecaster reports; `telemetry.metrics.Metrics` has this method."""

    def forecast(self, group: str, predicted: float, observed: float | None = None) -> None:
        """The forecast load for now and, when known, the load observed."""
        ...


def lead_time(policy: spec.GroupPolicy, measured: float | None = None) -> float:
    """How far ahead to forecast: the policy's lead, else the measured clone-to-ready p90, else
    warm-up plus one evaluation interval (before the first clone is measured)."""
    return forecast.lead(policy.predictive.lead, measured, policy.warmup, policy.evaluation_interval)


class Forecaster:
    """One group's history cache, shadow score book and latest forecast."""

    def __init__(self, refresh: float, timeout: float) -> None:
        self.refresh = refresh
        self.timeout = timeout
        self.history: model.Samples = ()
        self.fetched_at: float | None = None
        self.book = shadow.Book()
        self.last_load: float | None = None
        """The newest forecast load (None before the first or without enough history)."""

    async def floor(
        self,
        policy: spec.GroupPolicy,
        known: Mapping[str, sources.MetricSource],
        now: float,
        observer: ForecastObserver,
        measured_lead: float | None = None,
    ) -> int | None:
        """The forecast floor for the core (active mode), or None (off, shadow, or no forecast yet).

        `measured_lead`: the group's clone-to-ready p90 when the target measures it.
        """
        predictive = policy.predictive
        if predictive.mode == "off":
            return None
        await self._refresh(policy, known.get(predictive.source), now)
        lead = lead_time(policy, measured_lead)
        raw = self._predict(policy, now, lead)
        if raw is None:
            return None
        load = self.last_load = raw * self.book.margin
        observed = self.history[-1].value if self.history else None
        self.book = self.book.expect(now + lead, now + lead, load)
        if observed is not None:
            self.book = self.book.settle(now, observed, forecast.calibration_for(predictive))
        observer.forecast(policy.group, load, observed)
        if predictive.mode != "active":
            return None
        return forecast.instances(load, predictive.per_instance, predictive.headroom)

    def _predict(self, policy: spec.GroupPolicy, now: float, lead: float) -> float | None:
        self.last_load = forecast.predict(
            self.history,
            now=now,
            lead=lead,
            span=policy.evaluation_interval,
            step=_step(policy.predictive.history),
            timezone=policy.predictive.timezone,
            params=forecast.params_for(policy.predictive),
        )
        return self.last_load

    async def _refresh(self, policy: spec.GroupPolicy, source: object, now: float) -> None:
        """Read the whole history at the slow cadence, and top up the newest points on every tick.

        The near-term forecast starts from the newest known load, so a history that is minutes old
        would make every forecast late.
        """
        if not hasattr(source, "query_range"):
            if self.fetched_at is None:
                log.warning("forecast_history_unavailable", source=policy.predictive.source)
                self.fetched_at = now
            return
        history = cast(sources.HistorySource, source)
        predictive = policy.predictive
        step = _step(predictive.history)
        if self.fetched_at is None or now - self.fetched_at >= self.refresh or not self.history:
            self.fetched_at = now
            fetched = await self._fetch(history, predictive.query, now - predictive.history, now, step)
            self.history = fetched if fetched is not None else self.history
            return
        newest = self.history[-1].timestamp
        if now - newest < step:
            return
        newer = await self._fetch(history, predictive.query, newest + step, now, step)
        if newer:
            horizon = now - predictive.history
            kept = tuple(s for s in self.history if s.timestamp >= horizon)
            self.history = kept + tuple(s for s in newer if s.timestamp > newest)

    async def _fetch(
        self, history: sources.HistorySource, query: str, start: float, end: float, step: float
    ) -> model.Samples | None:
        try:
            async with asyncio.timeout(self.timeout):
                return await history.query_range(query, start, end, step)
        except (errors.SourceError, TimeoutError) as exc:
            log.warning("forecast_history_failed", error=str(exc) or type(exc).__name__)
            return None
        except Exception:
            log.exception("forecast_history_bug", note="the forecast goes on with the history it has")
            return None


def _step(history: float) -> float:
    return max(60.0, history / MAX_POINTS)
