"""The wiring every group handler shares, kept apart so the parts of a handler can take it without
importing the handler itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from autoscaler import sources, targets
from autoscaler.engine import Clock, journal, limiter, memory
from autoscaler.telemetry import metrics as telemetry


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    """Engine tunables shared by every handler."""

    query_timeout: float = 10.0
    """Seconds one metric query may take before its check counts as failed."""
    backoff_initial: float = 10.0
    """First BACKOFF after a temporary target error; doubles with each further failure."""
    backoff_max: float = 300.0
    """Longest BACKOFF."""
    history_refresh: float = 300.0
    """How often predictive groups re-read their range-query history."""


@dataclass(frozen=True, slots=True)
class Deps:
    """What every handler shares: the world it acts on and the places it reports to."""

    target: targets.Target
    sources: Mapping[str, sources.MetricSource]
    clock: Clock
    limiter: limiter.Limiter
    store: memory.MemoryStore
    journal: journal.Journal
    metrics: telemetry.Metrics
    settings: HandlerSettings = HandlerSettings()
