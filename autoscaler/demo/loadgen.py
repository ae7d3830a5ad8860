"""A built-in "webmail" exporter that replays a time-compressed office day, so the demo has load to follow.

The day has a quiet night, a morning ramp from 07:30 to 09:00, a lunch dip, and an evening fall;
`day_seconds` of real time stand for 24 hours. The load is a pure function of the injected clock,
so tests (and the demo's live view) are deterministic. It serves, on loopback by default:

    /metrics   webmail_active_sessions (gauge), webmail_requests_total (counter),
               webmail_day_time_hours (gauge, the simulated time of day)
    /state     the same as JSON, for a live view
"""

from __future__ import annotations

import bisect
import datetime
import time
from collections.abc import Callable

from aiohttp import web

DAY = 86_400.0
OFFICE_DAY = (
    (0.0, 0.05),
    (6.0, 0.05),
    (7.5, 0.15),
    (9.0, 1.0),
    (11.5, 0.95),
    (12.25, 0.6),
    (13.5, 0.9),
    (16.5, 0.85),
    (18.5, 0.3),
    (21.0, 0.12),
    (24.0, 0.05),
)
"""(hour of day, fraction of peak sessions), interpolated linearly between points."""


def office_load(hour: float) -> float:
    """The fraction of peak sessions open at `hour` (0..24) of a working day."""
    hours = [point[0] for point in OFFICE_DAY]
    hour %= 24.0
    right = min(max(bisect.bisect_right(hours, hour), 1), len(OFFICE_DAY) - 1)
    (h0, f0), (h1, f1) = OFFICE_DAY[right - 1], OFFICE_DAY[right]
    return f0 + (f1 - f0) * (hour - h0) / (h1 - h0)


class LoadGenerator:
    """Serves the simulated webmail load over HTTP; time comes from `clock` (monotonic seconds)."""

    def __init__(
        self,
        *,
        day_seconds: float = 300.0,
        peak_sessions: int = 400,
        requests_per_session: float = 0.5,
        start_hour: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`requests_per_session` is per real second; the day starts at `start_hour` when created."""
        self.day_seconds = day_seconds
        self.peak_sessions = peak_sessions
        self.requests_per_session = requests_per_session
        self.start_hour = start_hour
        self._clock = clock
        self._origin = clock()
        self._requests = 0.0
        self._last: tuple[float, float] | None = None
        self._runner: web.AppRunner | None = None

    def day_hours(self) -> float:
        """The simulated time of day, in hours since midnight (0 <= h < 24)."""
        elapsed = (self._clock() - self._origin) / self.day_seconds * 24.0
        return (self.start_hour + elapsed) % 24.0

    def current_day_time(self) -> datetime.time:
        """The simulated time of day, for a live view (`.strftime("%H:%M")`)."""
        seconds = int(self.day_hours() * 3600) % int(DAY)
        return datetime.time(seconds // 3600, seconds // 60 % 60, seconds % 60)

    def sessions(self) -> float:
        """Sessions open now."""
        return round(self.peak_sessions * office_load(self.day_hours()), 3)

    def requests_total(self) -> float:
        """Requests served so far: the sessions integrated over real time (trapezoids between reads)."""
        now, sessions = self._clock(), self.sessions()
        if self._last is not None:
            then, before = self._last
            self._requests += (before + sessions) / 2 * (now - then) * self.requests_per_session
        self._last = (now, sessions)
        return round(self._requests, 3)

    def exposition(self) -> str:
        """The current values in the Prometheus text format."""
        requests, sessions = self.requests_total(), self.sessions()
        return (
            "# HELP webmail_active_sessions Webmail sessions open right now.\n"
            "# TYPE webmail_active_sessions gauge\n"
            f"webmail_active_sessions {sessions}\n"
            "# HELP webmail_requests_total Webmail requests served.\n"
            "# TYPE webmail_requests_total counter\n"
            f"webmail_requests_total {requests}\n"
            "# HELP webmail_day_time_hours Simulated time of day of the replayed office day.\n"
            "# TYPE webmail_day_time_hours gauge\n"
            f"webmail_day_time_hours {round(self.day_hours(), 4)}\n"
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.exposition(), content_type="text/plain", charset="utf-8")

    async def _state(self, request: web.Request) -> web.Response:
        state = {
            "day_time": self.current_day_time().strftime("%H:%M"),
            "sessions": self.sessions(),
            "requests_total": self.requests_total(),
        }
        return web.json_response(state)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve until `stop()`; returns the /metrics URL (with the real port when `port` is 0)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/state", self._state)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        return f"http://{bound_host}:{bound_port}/metrics"

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
