"""Structured logs as JSON lines on stdout (journald collects them), plus edge-triggered failure logging.

`configure()` sets structlog up once at startup; `group` and `tick_id` come from contextvars bound
with `tick_context()`, so every line of a tick carries them without passing loggers around.

`EdgeLog` keeps a flapping dependency from flooding the journal: it logs one line when a thing
starts failing (or fails in a new way) and one when it recovers; repeats are only counted, and
the count appears on the recovery line. Counters in `telemetry.metrics` carry the rate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import structlog


def configure(level: str = "info", *, json: bool = True, stream: TextIO | None = None) -> None:
    """Route structlog to `stream` (stdout) as JSON lines (or readable console lines) at `level`."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.dict_tracebacks if json else structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=False,
    )


def tick_context(group: str, tick_id: int | str) -> contextlib.AbstractContextManager[None]:
    """Bind `group` and `tick_id` to every log line inside the block (task-local)."""
    return structlog.contextvars.bound_contextvars(group=group, tick_id=tick_id)


@dataclasses.dataclass
class _Failure:
    """One ongoing failure: its class, when it began and how often it repeated since."""

    error_class: str
    since: float
    repeats: int = 0


class EdgeLog:
    """Logs failures on their edges only: when one begins or changes class, and when it recovers."""

    def __init__(self, logger: Any = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        """`logger` defaults to structlog's; `clock` measures how long a failure lasted."""
        self._logger = logger
        self._clock = clock
        self._failing: dict[str, _Failure] = {}

    def _log(self) -> Any:
        return self._logger if self._logger is not None else structlog.get_logger()

    def failed(self, key: str, error_class: str, **fields: Any) -> bool:
        """Report one failure of `key`; True when a line was logged (a new failure or a new class)."""
        ongoing = self._failing.get(key)
        if ongoing is not None and ongoing.error_class == error_class:
            ongoing.repeats += 1
            return False
        self._failing[key] = _Failure(error_class, self._clock())
        previous = {} if ongoing is None else {"previous_error_class": ongoing.error_class}
        self._log().warning("failure_began", key=key, error_class=error_class, **previous, **fields)
        return True

    def recovered(self, key: str, **fields: Any) -> bool:
        """Report that `key` works; True when it had been failing and a line was logged."""
        ongoing = self._failing.pop(key, None)
        if ongoing is None:
            return False
        self._log().info(
            "failure_recovered",
            key=key,
            error_class=ongoing.error_class,
            repeats=ongoing.repeats,
            failed_for_seconds=round(self._clock() - ongoing.since, 3),
            **fields,
        )
        return True

    def failing(self) -> Mapping[str, str]:
        """The keys failing right now, with their error class (for status lines and /readyz)."""
        return {key: failure.error_class for key, failure in self._failing.items()}
