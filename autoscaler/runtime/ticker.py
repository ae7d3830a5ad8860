"""When groups are evaluated: APScheduler jobs that only poke handlers, never run the work themselves.

One interval job per group (with jitter, `max_instances=1`, `coalesce=True`) and, for each calendar
window of a policy, a cron job at its opening and a one-off job at its closing, so a schedule floor
applies on the minute rather than at the next interval. The work runs in the handler's own task, so
supervision, cancellation and "one evaluation at a time" stay with the daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from autoscaler.engine import handler
from autoscaler.policy import schedule, spec


def _poker(poke: Callable[[], None]) -> Callable[[], object]:
    """An async job function: AsyncIOScheduler runs those on the loop (sync ones go to a thread)."""

    async def job() -> None:
        poke()

    return job


class Ticker:
    """Keeps one set of jobs per managed group."""

    def __init__(self, jitter: float = 0.0) -> None:
        self.jitter = jitter
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._revisions: dict[str, str] = {}

    def start(self) -> None:
        """Start firing jobs (inside the running loop)."""
        self.scheduler.start()

    def shutdown(self) -> None:
        """Stop firing jobs; running pokes are instantaneous, so nothing is waited for."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def sync(self, handlers: Iterable[handler.GroupHandler]) -> None:
        """Jobs for exactly these groups, rebuilt for groups whose policy changed."""
        wanted = {h.group: h for h in handlers}
        for group in set(self._revisions) - set(wanted):
            self._remove(group)
        for group, each in wanted.items():
            revision = each.latest.revision
            if self._revisions.get(group) != revision:
                self._remove(group)
                self._add(each)
                self._revisions[group] = revision

    def _remove(self, group: str) -> None:
        for job in self.scheduler.get_jobs():
            if job.id.startswith(f"{group}/"):
                job.remove()
        self._revisions.pop(group, None)

    def _add(self, each: handler.GroupHandler) -> None:
        policy = each.latest.policy
        trigger = IntervalTrigger(seconds=policy.evaluation_interval, jitter=self.jitter or None)
        self.scheduler.add_job(
            _poker(each.poke),
            trigger,
            id=f"{policy.group}/interval",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        for index, window in enumerate(policy.schedules):
            self.scheduler.add_job(
                self._window_opened(each, window),
                schedule.trigger(window.cron, window.timezone),
                id=f"{policy.group}/window-{index}",
                max_instances=1,
                coalesce=True,
            )

    def _window_opened(self, each: handler.GroupHandler, window: spec.Schedule) -> Callable[[], object]:
        async def job() -> None:
            each.poke()
            closes = datetime.now(UTC) + timedelta(seconds=window.duration + 1)
            self.scheduler.add_job(_poker(each.poke), "date", run_date=closes, id=None)

        return job
