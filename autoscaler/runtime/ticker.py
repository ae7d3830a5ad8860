"""When groups are evaluated: timers that only poke handlers, never run the work themselves.

Each group has a pulse task that pokes it first at its offset and then every evaluation interval
(plus up to `jitter` seconds) measured on the monotonic clock, so a wall-clock step (NTP) neither
stalls nor bunches evaluations. Groups that start together (the daemon's start, a reload adding
many) have their first evaluations paced at `pace` per second: each group's offset is a fixed
fraction of the window, from a hash of its name, so 10,000 groups do not all evaluate in one burst
(which stalls the loop for seconds), a restart keeps each group's phase, and a lone group starts at
once. An edited group is evaluated at once.

Each calendar window of a policy is an APScheduler cron job at its opening and a
one-off job at its closing, so a schedule floor applies on the minute rather than at the next
interval; those follow the wall clock on purpose. The work runs in the handler's own task, so
supervision, cancellation and "one evaluation at a time" stay with the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from autoscaler.engine import Clock, handler
from autoscaler.policy import schedule, spec
from autoscaler.runtime.clock import SystemClock

PACE = 500.0
"""First evaluations per second when many groups start together (the window of 10,000 is 20 s)."""


def phase(group: str) -> float:
    """A fraction in [0, 1) fixed by the group's name (the same on every host and every start)."""
    digest = hashlib.blake2b(group.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def first_offsets(intervals: Mapping[str, float], pace: float = PACE) -> dict[str, float]:
    """Seconds until the first evaluation of each of the groups starting together.

    The window is the time `pace` evaluations per second take for them all, at most a group's own
    interval (its next evaluation is due then anyway); one group alone has none.
    """
    window = (len(intervals) - 1) / pace
    return {group: phase(group) * min(window, interval) for group, interval in intervals.items()}


def _poker(poke: Callable[[], None]) -> Callable[[], object]:
    """An async job function: AsyncIOScheduler runs those on the loop (sync ones go to a thread)."""

    async def job() -> None:
        poke()

    return job


class Ticker:
    """Keeps one pulse and one set of window jobs per managed group."""

    def __init__(self, jitter: float = 0.0, clock: Clock | None = None, pace: float = PACE) -> None:
        self.jitter = jitter
        self.pace = pace
        self.clock: Clock = clock or SystemClock()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._revisions: dict[str, str] = {}
        self._intervals: dict[str, tuple[Callable[[], None], float]] = {}
        """Each group's poke and evaluation interval, pulsed once started."""
        self._pulses: dict[str, asyncio.Task[None]] = {}
        self._jobs: dict[str, list[str]] = {}
        """The window jobs of each group, by id (never a scan of every job: 10,000 groups)."""
        self._started = False

    def start(self) -> None:
        """Start poking (inside the running loop)."""
        self._started = True
        self.scheduler.start()
        for _ in self._pulse_paced(list(self._intervals)):
            pass

    def shutdown(self) -> None:
        """Stop poking; pokes are instantaneous, so nothing is waited for."""
        self._started = False
        for group in list(self._pulses):
            self._pulses.pop(group).cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def sync(self, handlers: Iterable[handler.GroupHandler]) -> None:
        """Pulses and jobs for exactly these groups, rebuilt for groups whose policy changed."""
        for _ in self._sync_steps(handlers):
            pass

    async def sync_gradually(self, handlers: Iterable[handler.GroupHandler], batch: int = 200) -> None:
        """`sync`, yielding to the event loop every `batch` groups changed."""
        for index, _ in enumerate(self._sync_steps(handlers), start=1):
            if index % batch == 0:
                await asyncio.sleep(0)

    def _sync_steps(self, handlers: Iterable[handler.GroupHandler]) -> Iterator[str]:
        """Sync one group per step; yields the group after each change."""
        wanted = {h.group: h for h in handlers}
        for group in set(self._revisions) - set(wanted):
            self._remove(group)
            yield group
        added: list[str] = []
        for group, each in wanted.items():
            revision = each.latest.revision
            if self._revisions.get(group) != revision:
                edited = group in self._revisions
                self._remove(group)
                self._add(each)
                self._revisions[group] = revision
                if edited and self._started:
                    self._pulse(group)
                else:
                    added.append(group)
                yield group
        if self._started:
            for group in self._pulse_paced(added):
                yield group

    def _remove(self, group: str) -> None:
        for job_id in self._jobs.pop(group, []):
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(job_id)
        self._intervals.pop(group, None)
        pulse = self._pulses.pop(group, None)
        if pulse is not None:
            pulse.cancel()
        self._revisions.pop(group, None)

    def _add(self, each: handler.GroupHandler) -> None:
        policy = each.latest.policy
        self._intervals[policy.group] = (each.poke, policy.evaluation_interval)
        for index, window in enumerate(policy.schedules):
            job_id = f"{policy.group}/window-{index}"
            self.scheduler.add_job(
                self._window_opened(each, window),
                schedule.trigger(window.cron, window.timezone),
                id=job_id,
                max_instances=1,
                coalesce=True,
            )
            self._jobs.setdefault(policy.group, []).append(job_id)

    def _pulse_paced(self, groups: list[str]) -> Iterator[str]:
        """Start the pulses of groups starting together, each at its offset; yields each group."""
        offsets = first_offsets({group: self._intervals[group][1] for group in groups}, self.pace)
        for group, offset in offsets.items():
            self._pulse(group, offset)
            yield group

    def _pulse(self, group: str, offset: float = 0.0) -> None:
        poke, interval = self._intervals[group]
        every = self._every(poke, interval, offset)
        self._pulses[group] = asyncio.create_task(every, name=f"tick:{group}")

    async def _every(self, poke: Callable[[], None], interval: float, offset: float = 0.0) -> None:
        """Poke after `offset` and then every `interval` monotonic seconds (plus jitter), skipping
        missed beats."""
        if offset > 0:
            await self.clock.sleep(offset)
        due = self.clock.monotonic()
        while True:
            poke()
            due = max(due + interval, self.clock.monotonic())
            await self.clock.sleep(due - self.clock.monotonic() + random.uniform(0.0, self.jitter))

    def _window_opened(self, each: handler.GroupHandler, window: spec.Schedule) -> Callable[[], object]:
        async def job() -> None:
            each.poke()
            closes = datetime.now(UTC) + timedelta(seconds=window.duration + 1)
            self.scheduler.add_job(_poker(each.poke), "date", run_date=closes, id=None)

        return job
