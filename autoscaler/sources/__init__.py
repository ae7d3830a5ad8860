"""The seam between the engine and where metrics come from: one query in, samples out.

An empty result is a valid answer (the core reads it as missing data, never as zero); a source
raises only `errors.SourceError` subclasses. Implementations are looked up by the `kind` of a
source in the daemon config.
"""

from __future__ import annotations

from typing import Protocol

from autoscaler import model


class MetricSource(Protocol):
    """Answers instant queries."""

    async def query(self, query: str, at: float) -> model.Samples:
        """Samples for `query` as of `at` (Unix seconds); may be empty; raises SourceError."""
        ...


class HistorySource(Protocol):
    """Answers range queries, for forecasts that learn from the past."""

    async def query_range(self, query: str, start: float, end: float, step: float) -> model.Samples:
        """Samples of `query` from `start` to `end` every `step` seconds; raises SourceError."""
        ...
