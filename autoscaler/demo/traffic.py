"""The office day as real HTTP requests through HAProxy, counted by the guest that answered each.

The served demo's load: the replayed day's shape (`loadgen.office_load`) scaled to a peak request
rate, sent at a steady pace to one URL (HAProxy's frontend inside the demo's namespace). Bounded
in requests (`cap`), in flight (`concurrency`) and in time (until stopped, each request its own
timeout). A guest's page names it ("hostname=<domain> ..."), so the requests/s each instance
served are counted from the answers, as a user of the service would see them.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

import aiohttp

WINDOW = 5.0
"""Seconds over which the per-instance rate is averaged."""


def served_by(body: str) -> str:
    """The instance a guest's page names ("hostname=<h> instance-id=<id>"), or '?' when it names none."""
    for word in body.split():
        if word.startswith("hostname="):
            return word.removeprefix("hostname=")
    return "?"


class HttpLoad:
    """Paced GETs to `url` at `rate()` per second; totals and recent rates per serving instance."""

    def __init__(
        self,
        url: str,
        rate: Callable[[], float],
        *,
        cap: int = 100_000,
        concurrency: int = 32,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`rate` is read before each request, so the pace follows the replayed day."""
        self.url = url
        self.rate = rate
        self.cap = cap
        self.concurrency = concurrency
        self.timeout = timeout
        self._clock = clock
        self.sent = 0
        self.served: collections.Counter[str] = collections.Counter()
        """Requests answered 200, by the instance that answered."""
        self.failed: collections.Counter[str] = collections.Counter()
        """Requests not answered 200, by status ('503') or error class."""
        self._recent: collections.deque[tuple[float, str]] = collections.deque()

    def rates(self) -> dict[str, float]:
        """Requests/s each instance served over the last WINDOW seconds (failures under 'failed')."""
        now = self._clock()
        while self._recent and self._recent[0][0] < now - WINDOW:
            self._recent.popleft()
        counts = collections.Counter(who for _, who in self._recent)
        return {who: count / WINDOW for who, count in sorted(counts.items())}

    def summary(self) -> str:
        """One line: requests served per instance and failures, for the end of the demo."""
        served = " ".join(f"{who}={count}" for who, count in sorted(self.served.items())) or "none"
        failed = sum(self.failed.values())
        reasons = ", ".join(f"{why} x{count}" for why, count in self.failed.most_common(3))
        return f"served by instance: {served}; failed: {failed}" + (f" ({reasons})" if failed else "")

    async def run(self) -> None:
        """Send until cancelled or `cap` requests; what is in flight is cancelled with it."""
        slots = asyncio.Semaphore(self.concurrency)
        pending: set[asyncio.Task[None]] = set()
        session_timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=session_timeout, connector=connector) as session:
            try:
                while self.sent < self.cap:
                    rate = self.rate()
                    if rate <= 0:
                        await asyncio.sleep(0.5)
                        continue
                    await slots.acquire()
                    self.sent += 1
                    task = asyncio.create_task(self._one(session, slots))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    await asyncio.sleep(1.0 / rate)
            finally:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def _one(self, session: aiohttp.ClientSession, slots: asyncio.Semaphore) -> None:
        try:
            async with session.get(self.url) as reply:
                body = await reply.text(errors="replace")
                if reply.status == 200:
                    self._count(served_by(body))
                else:
                    self._count_failure(str(reply.status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._count_failure(type(exc).__name__)
        finally:
            slots.release()

    def _count(self, who: str) -> None:
        self.served[who] += 1
        self._recent.append((self._clock(), who))

    def _count_failure(self, why: str) -> None:
        self.failed[why] += 1
        self._recent.append((self._clock(), "failed"))
