"""Operator pauses in etcd, shared by every daemon: a pause sent to any of them holds the group.

Only the acting daemon acts, but an operator cannot be expected to know which one that is, nor
to repeat a pause after a failover. So a pause or resume received by any daemon is written to
`<prefix>/groups/<group>/pause`, with the daemon that took it and when, and every daemon reads it
before each tick: the leader stops acting for the group at its next tick, and a new leader starts
paused. The write is not fenced by leadership on purpose: it is the operator's word, and the
latest one wins, from whichever daemon.

Reading every group's key every tick on every daemon would cost etcd a request per group per
tick, so the board watches `<prefix>/groups/` instead and answers from what the watch delivered.
It does so only while that is provably current: the watch is open on the member this daemon's
other requests reach (a hung or cut-off member is left by those requests within a request
timeout, and the watch follows), it started no later than the group was first read, and nothing
was compacted away since; it is then as current as a read would be, give or take the
milliseconds an event takes to arrive. Otherwise each read asks etcd, as it would without the
watch, and the newer of the two answers (by revision) is kept.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from autoscaler import errors
from autoscaler.coordination import etcd
from autoscaler.coordination.watch import Follower
from autoscaler.engine.deps import SharedPause


@dataclass(frozen=True, slots=True)
class StoredPause:
    """A group's pause key as last read: the pause, who stored it and when (unix time)."""

    pause: SharedPause
    by: str | None = None
    at: float | None = None

    @classmethod
    def parse(cls, kv: etcd.KeyValue | None) -> StoredPause:
        """From the key (None: never written)."""
        if kv is None:
            return cls(SharedPause(None, 0))
        try:
            data = json.loads(kv.value)
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        reason, by, at = data.get("reason"), data.get("by"), data.get("at")
        return cls(
            SharedPause(reason if isinstance(reason, str) else None, kv.mod_revision),
            by if isinstance(by, str) else None,
            float(at) if isinstance(at, int | float) else None,
        )


class EtcdPauseBoard:
    """Implements `engine.deps.PauseBoard` with one etcd key per group, followed by a watch."""

    def __init__(self, client: etcd.Client, prefix: str, daemon: str, watch: bool = True) -> None:
        self.client = client
        self.prefix = prefix.rstrip("/")
        self.daemon = daemon
        self.reads = 0
        """Reads that had to ask etcd (the watch could not vouch for the key)."""
        self._known: dict[str, StoredPause] = {}
        self.follower: Follower | None = None
        """The watch of every group's keys (None: each read asks etcd)."""
        if watch:
            self.follower = Follower(client, f"{self.prefix}/groups/", self._changed, prefix=True)

    def key(self, group: str) -> str:
        """Where the group's pause lives."""
        return f"{self.prefix}/groups/{group}/pause"

    def shown(self, group: str) -> dict[str, Any] | None:
        """Who paused the group and when, as last read or written here (None: not paused)."""
        stored = self._known.get(group)
        if stored is None or stored.pause.reason is None:
            return None
        return {"reason": stored.pause.reason, "by": stored.by, "at": stored.at}

    async def read(self, group: str) -> SharedPause:
        """The stored pause (reason None: resumed or never paused); OSError when etcd does not answer."""
        known = self._known.get(group)
        if known is not None and await self._current():
            return known.pause
        self.reads += 1
        try:
            result = await self.client.txn([], [etcd.get(self.key(group))])
        except errors.CoordinationUnavailable as exc:
            raise OSError(f"etcd: {exc}") from exc
        found = result.ranges[0][0] if result.ranges and result.ranges[0] else None
        follower = self.follower
        if follower is not None and not follower.running:
            self._known.clear()  # learnt through a watch that has ended: it may have missed changes
            follower.follow(result.revision + 1)  # it delivers every change after this read
        self._learn(group, StoredPause.parse(found))
        return self._known[group].pause

    async def write(self, group: str, reason: str | None) -> int:
        """Store a pause (or, with None, a resume) with who sent it and when; the key's new revision."""
        at = time.time()
        value = json.dumps({"reason": reason, "by": self.daemon, "at": at})
        try:
            result = await self.client.txn([], [etcd.put(self.key(group), value)])
        except errors.CoordinationUnavailable as exc:
            raise OSError(f"etcd: {exc}") from exc
        self._learn(group, StoredPause(SharedPause(reason, result.revision), self.daemon, at))
        return result.revision

    async def close(self) -> None:
        """Stop watching."""
        if self.follower is not None:
            await self.follower.stop()

    async def _current(self) -> bool:
        """Whether what the watch delivered is certainly the key's present value."""
        follower = self.follower
        if follower is None or not follower.running or follower.endpoint is None:
            return False
        if follower.endpoint != self.client.endpoint:
            await follower.reopen()  # our requests left that member: it may be hung or cut off
            return False
        return True

    def _learn(self, group: str, stored: StoredPause) -> None:
        """Keep the newer of what is known and `stored` (a read may race a watched event)."""
        known = self._known.get(group)
        if known is None or stored.pause.revision >= known.pause.revision:
            self._known[group] = stored

    def _changed(self, what: str, event: etcd.WatchEvent | None) -> None:
        if event is None:  # compacted or canceled: events may be lost, read every key afresh
            self._known.clear()
            return
        key = event.kv.key
        if not key.endswith("/pause"):
            return  # group memory shares the prefix
        group = key[len(self.prefix) + len("/groups/") : -len("/pause")]
        # learnt even before the group's first read here: that read's answer may arrive after this
        if event.deleted:
            self._learn(group, StoredPause(SharedPause(None, event.kv.mod_revision)))
        else:
            self._learn(group, StoredPause.parse(event.kv))
