"""Follow an etcd key (or prefix) as it changes, across broken streams, etcd restarts and compaction.

A standby learns that the leader key is gone from a watch instead of asking etcd several times a
second. A watch is only a hint: whoever follows one still acts on a transaction's answer alone
(the election campaigns, the fence compares), so a watch that is late, broken or wrong can delay
a take-over but never make a leader.

The stream is resumed from the revision after the last one it delivered, so a break (a member
killed or restarted, a proxy timeout) loses no event: etcd replays what happened meanwhile. Only
when those revisions were compacted away can events be lost; etcd then cancels the watch with the
oldest revision it still has, and the follower says "compacted" so its owner re-reads the key,
and goes on from there. Any other cancel is reported too ("canceled") and the watch reopened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from autoscaler.coordination import etcd
from autoscaler.errors import CoordinationUnavailable

log = structlog.get_logger("autoscaler.coordination")
RETRY = 0.2
"""Seconds before a broken or canceled watch is opened again."""

Listener = Callable[[str, etcd.WatchEvent | None], None]
"""Told of each event (`"put"` or `"delete"` with the event), or that events may have been missed
(`"compacted"`, `"canceled"`, with None): then re-read what is watched."""


class Follower:
    """One watch kept open from a revision on, in a task of its own, until stopped."""

    def __init__(
        self,
        client: etcd.Client,
        key: str,
        listener: Listener,
        *,
        prefix: bool = False,
        deletes_only: bool = False,
    ) -> None:
        self.client = client
        self.key = key
        self.listener = listener
        self.prefix = prefix
        self.deletes_only = deletes_only
        self.next_revision = 0
        """The first revision not yet delivered: where the stream resumes after a break."""
        self.endpoint: str | None = None
        """The member whose stream is open now (None while none is)."""
        self.reconnects = 0
        """Streams opened again after a break or a cancel."""
        self.compactions = 0
        """Times the revisions to resume from had been compacted away."""
        self.problem = ""
        """Why the last stream ended ("" while none has)."""
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True while the follower's task runs (connected or reconnecting)."""
        return self._task is not None and not self._task.done()

    def follow(self, revision: int) -> None:
        """Start following from `revision` unless already following (then it keeps its own place)."""
        if self.running:
            return
        self.next_revision = revision
        self._task = asyncio.create_task(self._run(), name=f"etcd-watch {self.key}")

    async def reopen(self) -> None:
        """Close the stream and open it again (on the client's preferred member), from where it was."""
        if self.running:
            await self.stop()
            self.reconnects += 1
            self.follow(self.next_revision)

    async def stop(self) -> None:
        """Close the stream."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.endpoint = None

    async def _run(self) -> None:
        try:
            while True:
                at_once = False
                try:
                    at_once = await self._stream()
                except CoordinationUnavailable as exc:
                    if self.problem != str(exc):
                        log.info(
                            "etcd_watch_broken", key=self.key, error=str(exc), resume_at=self.next_revision
                        )
                    self.problem = str(exc)
                self.endpoint = None
                if not at_once:
                    await asyncio.sleep(RETRY)
                self.reconnects += 1
        finally:
            self.endpoint = None  # whatever ended the task, nothing is delivered any more

    async def _stream(self) -> bool:
        """Deliver one stream's events until etcd cancels it; whether to reopen it at once."""
        endpoint = self.client.endpoint
        stream = self.client.watch(
            self.key, self.next_revision, prefix=self.prefix, deletes_only=self.deletes_only
        )
        async with contextlib.aclosing(stream):
            async for message in stream:
                if message.created:
                    self.endpoint = endpoint
                    self.problem = ""
                if message.canceled:
                    return self._canceled(message)
                for event in message.events:
                    self.next_revision = max(self.next_revision, event.kv.mod_revision + 1)
                    self.listener("delete" if event.deleted else "put", event)
                if not message.events and not message.created and message.revision:
                    # a progress notice: everything up to its revision has been delivered
                    self.next_revision = max(self.next_revision, message.revision + 1)
        return False

    def _canceled(self, message: etcd.WatchMessage) -> bool:
        if message.compact_revision:
            self.compactions += 1
            log.info(
                "etcd_watch_compacted",
                key=self.key,
                wanted=self.next_revision,
                oldest=message.compact_revision,
            )
            self.next_revision = max(self.next_revision, message.compact_revision)
            self.problem = f"revision compacted; resumed at {message.compact_revision}"
            self.listener("compacted", None)
            return True
        self.problem = f"canceled by etcd: {message.cancel_reason or 'no reason given'}"
        log.info("etcd_watch_canceled", key=self.key, reason=message.cancel_reason)
        self.listener("canceled", None)
        return False
