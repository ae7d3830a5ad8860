"""The wiring every group handler shares, kept apart so the parts of a handler can take it without
importing the handler itself."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

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


class Leadership(Protocol):
    """Whether this daemon may act: always when alone; only while it leads when several coordinate."""

    def hold(self) -> str | None:
        """Why no action may start now ("standby", "etcd_unavailable"), or None."""
        ...

    def term(self) -> int:
        """Changes each time this daemon becomes the acting one (the group memory is re-read then)."""
        ...


class Alone:
    """The daemon without coordination: it always acts, and its memory is only its own."""

    def hold(self) -> str | None:
        """Nothing holds a lone daemon back."""
        return None

    def term(self) -> int:
        """One term, forever."""
        return 0


@dataclass(frozen=True, slots=True)
class SharedPause:
    """The operator pause every daemon of a group sees, as last written by any of them."""

    reason: str | None
    """The pause reason; None once resumed (or never paused)."""
    revision: int
    """Changes with every pause or resume (0: never written)."""


class PauseBoard(Protocol):
    """Where an operator pause is shared when several daemons coordinate.

    Any daemon may write it (a pause sent to a standby must hold the leader, and outlive it); the
    acting one reads it before each tick. A lone daemon has none: its memory file keeps its pause.
    """

    async def read(self, group: str) -> SharedPause:
        """The group's pause as stored; OSError when it cannot be read now."""
        ...

    async def write(self, group: str, reason: str | None) -> int:
        """Pause (`reason`) or resume (None) the group for every daemon; the new revision.

        OSError when it could not be stored.
        """
        ...


@dataclass(frozen=True, slots=True)
class Deps:
    """What every handler shares: the world it acts on and the places it reports to."""

    target: targets.Target
    sources: Mapping[str, sources.MetricSource]
    clock: Clock
    limiter: limiter.Limiter
    store: memory.GroupStore
    journal: journal.Journal
    metrics: telemetry.Metrics
    settings: HandlerSettings = HandlerSettings()
    leadership: Leadership = dataclasses.field(default_factory=Alone)
    pauses: PauseBoard | None = None
    """The shared operator pauses when coordinated; None when the daemon acts alone."""
