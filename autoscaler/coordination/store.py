"""Group memory in etcd, so a new leader goes on with the same cooldowns and windows.

It has the file store's interface (`engine.memory.GroupStore`). Only the leader writes, and each
write is fenced by the leader key's token in the same transaction, so a deposed leader can never
overwrite what its successor saved. A standby's saves are skipped: its memory is its own view for
/explain, and it re-reads the leader's when it takes over (the engine re-reads on each new term).
Operator pauses, which any daemon may set, have their own key (`coordination.pauses`).
"""

from __future__ import annotations

import json
from typing import Any

import structlog

from autoscaler import errors
from autoscaler.coordination import etcd
from autoscaler.coordination.election import Election
from autoscaler.engine import memory

log = structlog.get_logger("autoscaler.coordination")


class EtcdMemoryStore:
    """One key per group: `<prefix>/groups/<group>/memory`, holding the file store's JSON."""

    def __init__(self, client: etcd.Client, election: Election, prefix: str, refresh_every: int = 4) -> None:
        self.client = client
        self.election = election
        self.prefix = prefix.rstrip("/")
        self.refresh_every = refresh_every
        self._written: dict[str, tuple[dict[str, Any], int, int]] = {}

    def path(self, group: str) -> str:
        """Where the group's memory lives (said in logs when a write fails)."""
        return f"etcd:{self.prefix}/groups/{group}/memory"

    def _key(self, group: str) -> str:
        return f"{self.prefix}/groups/{group}/memory"

    async def load(self, group: str) -> memory.Saved | None:
        """The memory the last leader saved; None when there is none.

        OSError when etcd does not answer: the engine then holds the group's actions rather than
        act without the cooldowns and pauses its predecessor left.
        """
        try:
            found = await self.client.range(self._key(group))
        except errors.CoordinationUnavailable as exc:
            raise OSError(f"etcd: {exc}") from exc
        if found is None:
            return None
        try:
            data = json.loads(found.value)
        except ValueError:
            return None
        return memory.decode(data) if isinstance(data, dict) else None

    async def save(self, group: str, saved: memory.Saved) -> None:
        """Write when leading and something essential changed (or every few saves); fenced.

        OSError when etcd refuses or does not answer, as for a file that cannot be written.
        """
        election = self.election
        if not election.holding():
            return
        data = memory.encode(saved)
        essential = {k: v for k, v in data.items() if k != "recommendations"}
        last = self._written.get(group)
        unchanged = last is not None and last[0] == essential and last[2] == election.token
        if last is not None and unchanged and last[1] + 1 < self.refresh_every:
            self._written[group] = (essential, last[1] + 1, last[2])
            return
        token = election.token
        compare = [etcd.created_at(election.key, token)]
        try:
            result = await self.client.txn(compare, [etcd.put(self._key(group), json.dumps(data))])
        except errors.CoordinationUnavailable as exc:
            raise OSError(f"etcd: {exc}") from exc
        if not result.succeeded:
            election.deposed("memory write: the leader key changed hands")
            raise OSError("etcd: not written, this daemon no longer leads")
        self._written[group] = (essential, 0, token)
