"""Operator pauses in etcd, shared by every daemon: a pause sent to any of them holds the group.

Only the acting daemon acts, but an operator cannot be expected to know which one that is, nor
to repeat a pause after a failover. So a pause or resume received by any daemon is written to
`<prefix>/groups/<group>/pause`, and every daemon reads it before each tick: the leader stops
acting for the group at its next tick, and a new leader starts paused. The write is not fenced by
leadership on purpose: it is the operator's word, and the latest one wins, from whichever daemon.
"""

from __future__ import annotations

import json
import time

from autoscaler import errors
from autoscaler.coordination import etcd
from autoscaler.engine.deps import SharedPause


class EtcdPauseBoard:
    """Implements `engine.deps.PauseBoard` with one etcd key per group."""

    def __init__(self, client: etcd.Client, prefix: str, daemon: str) -> None:
        self.client = client
        self.prefix = prefix.rstrip("/")
        self.daemon = daemon

    def key(self, group: str) -> str:
        """Where the group's pause lives."""
        return f"{self.prefix}/groups/{group}/pause"

    async def read(self, group: str) -> SharedPause:
        """The stored pause (reason None: resumed or never paused); OSError when etcd does not answer."""
        try:
            found = await self.client.range(self.key(group))
        except errors.CoordinationUnavailable as exc:
            raise OSError(f"etcd: {exc}") from exc
        if found is None:
            return SharedPause(None, 0)
        try:
            data = json.loads(found.value)
        except ValueError:
            data = {}
        reason = data.get("reason") if isinstance(data, dict) else None
        return SharedPause(reason if isinstance(reason, str) else None, found.mod_revision)

    async def write(self, group: str, reason: str | None) -> int:
        """Store a pause (or, with None, a resume) with who sent it and when; the key's new revision."""
        value = json.dumps({"reason": reason, "by": self.daemon, "at": time.time()})
        try:
            result = await self.client.txn([], [etcd.put(self.key(group), value)])
        except errors.CoordinationUnavailable as exc:
            raise OSError(f"etcd: {exc}") from exc
        return result.revision
