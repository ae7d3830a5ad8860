"""The proof a leader gives before every mutating hypervisor call: its token still names the key.

The local deadline alone is not enough: a leader can check it, stall (SIGSTOP, a long GC, a
frozen VM) past its lease, and act when it wakes while another daemon already leads. So before
each mutating call the gateway asks `admit`, which needs the local deadline to hold *and* an etcd
transaction comparing the leader key's create revision with our token to succeed; only etcd's own
answer can say the key was not lost and re-created meanwhile. `admit` returns the monotonic time
until which the call may start; the gateway's worker thread checks it again right before calling
libvirt, so a call that waited in the worker queue or was stalled after the proof is dropped.
"""

from __future__ import annotations

import asyncio
import collections

import structlog

from autoscaler import errors
from autoscaler.coordination import etcd
from autoscaler.coordination.election import Election

log = structlog.get_logger("autoscaler.coordination")


class Fence:
    """Implements `virt.gateway.Fence` against an `Election`."""

    def __init__(self, client: etcd.Client, election: Election) -> None:
        self.client = client
        self.election = election
        self.refused: collections.Counter[str] = collections.Counter()
        """Refused calls by operation (for the metrics)."""
        self.admitted = 0

    async def admit(self, op: str, uri: str) -> float:
        """Prove leadership for one mutating call; Fenced when that cannot be proved."""
        election = self.election
        if not election.holding():
            self._refuse(op, uri, f"not the leader ({election.hold()})")
        token = election.token
        try:
            async with asyncio.timeout(election.timings.margin):
                result = await self.client.txn([etcd.created_at(election.key, token)], [])
        except (errors.CoordinationUnavailable, TimeoutError) as exc:
            self._refuse(op, uri, f"etcd did not confirm the lease: {exc or 'timeout'}")
        if not result.succeeded:
            election.deposed(f"fence: the leader key no longer has token {token}")
            self._refuse(op, uri, "the leader key changed hands")
        if not election.holding() or election.token != token:
            self._refuse(op, uri, "the lease ran out while it was being confirmed")
        self.admitted += 1
        log.info("action_admitted", op=op, host=uri, token=token)
        return election.valid_until()

    def _refuse(self, op: str, uri: str, why: str) -> None:
        self.refused[op] += 1
        log.warning("action_fenced", op=op, host=uri, reason=why)
        raise errors.Fenced(f"{op} on {uri} refused: {why}")
