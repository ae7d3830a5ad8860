"""Several daemons, one acting: election, fencing and group memory through etcd.

The rest of the daemon sees coordination only through narrow seams it already has: the engine's
`Leadership` (may this daemon act now?), its `GroupStore` (where group memory lives) and
`PauseBoard` (operator pauses any daemon may set), the gateway's `Fence` (prove leadership
before each mutating libvirt call), and the target's ownership `Ledger` (which volumes we
created, whichever daemon created them). Without a `coordination:`
settings section none of this is imported and the daemon acts alone, as it always did.

One daemon acts for every group (not one per group): placement reserves host memory and vCPUs,
warm pools and orphan sweeps span every host, and all of that is decided inside one process. Two
leaders of different groups placing onto the same host at once would each count the same free
memory; a single acting daemon keeps admission exact without a distributed reservation scheme.
The others evaluate and journal every tick (so /explain works anywhere) and take over within
about one lease TTL when the leader dies, at once when it stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from autoscaler.coordination import etcd
from autoscaler.coordination.election import Election, Timings
from autoscaler.coordination.fence import Fence
from autoscaler.coordination.ledger import EtcdLedger
from autoscaler.coordination.pauses import EtcdPauseBoard
from autoscaler.coordination.store import EtcdMemoryStore
from autoscaler.coordination.watch import Follower
from autoscaler.errors import CoordinationUnavailable
from autoscaler.settings import CoordinationSettings
from autoscaler.telemetry import coordination as telemetry

__all__ = ["Coordinator"]
log = structlog.get_logger("autoscaler.coordination")


class Coordinator:
    """One daemon's part in the election, and the seams the engine and the target use."""

    def __init__(self, settings: CoordinationSettings) -> None:
        self.settings = settings
        self.name = settings.name or socket.gethostname()
        auth = etcd.Auth(
            settings.tls_ca, settings.tls_cert, settings.tls_key, settings.username, settings.password_file
        )
        self.client = etcd.Client(settings.endpoints, settings.request_timeout, auth)
        prefix = settings.prefix.rstrip("/")
        timings = Timings(
            settings.lease_ttl,
            settings.margin,
            settings.campaign_interval,
            settings.watch,
            settings.standby_poll_interval,
        )
        self.election = Election(self.client, f"{prefix}/leader", self.name, timings, self._changed)
        self.fence = Fence(self.client, self.election)
        self.store = EtcdMemoryStore(self.client, self.election, prefix)
        self.pauses = EtcdPauseBoard(self.client, prefix, self.name, settings.watch)
        self.ledger = EtcdLedger(self.client, prefix)
        """The volumes any daemon created (the target's ownership ledger), shared through etcd."""
        self.changes = 0
        self._listeners: list[Callable[[bool], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._settled_term = 0
        """The last term whose take-over (reconcile of the predecessor's unfinished work) is done."""
        self.groups: Callable[[], Iterable[str]] = tuple

    # --- life -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Reach etcd (waiting, or failing after start_timeout, per setting), then campaign."""
        settings = self.settings
        if settings.on_unreachable_at_start == "fail":
            deadline = asyncio.get_running_loop().time() + settings.start_timeout
            try:
                await etcd.wait_until_answering(self.client, self.election.key, deadline)
            except CoordinationUnavailable as exc:
                raise CoordinationUnavailable(
                    f"coordination: no etcd member of {list(settings.endpoints)} answered within "
                    f"{settings.start_timeout:g}s (on_unreachable_at_start: fail): {exc}"
                ) from exc
        self._task = asyncio.create_task(self.election.run(), name="etcd-election")
        log.info("coordination_started", daemon=self.name, endpoints=list(settings.endpoints))

    async def run(self) -> None:
        """Wait on the election for the daemon's life (a root task); its end is a bug."""
        assert self._task is not None
        await asyncio.shield(self._task)

    async def close(self) -> None:
        """Resign (revoke the lease: a standby takes over at once) and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.settings.request_timeout * 2):
                await self.election.resign()
        await self.pauses.close()
        await self.client.close()

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(leading)` whenever this daemon gains or loses leadership."""
        self._listeners.append(listener)

    def _changed(self, leading: bool) -> None:
        self.changes += 1
        for listener in self._listeners:
            listener(leading)

    # --- engine.Leadership --------------------------------------------------------------------------

    def hold(self) -> str | None:
        """Why this daemon may not act now ("standby", "etcd_unavailable", "taking_over"), or None.

        A new leader first reconciles (finishing or rolling back what its predecessor left half
        done); its groups act only after that, so an interrupted clone is finished, not repeated.
        """
        held = self.election.hold()
        if held is None and self.election.term != self._settled_term:
            return "taking_over"
        return held

    def settled(self, term: int) -> None:
        """The take-over of `term` is done: the groups may act."""
        self._settled_term = term

    def term(self) -> int:
        """Grows each time this daemon becomes leader."""
        return self.election.term

    def acting(self) -> bool:
        """True while this daemon leads with a valid lease."""
        return self.election.holding()

    # --- what /readyz, /status and the metrics show ------------------------------------------------

    def unready(self) -> str | None:
        """Why this daemon is not ready (etcd unreachable or without quorum), or None."""
        problem = self.election.unavailable()
        if problem:
            return f"coordination: etcd unavailable: {problem}"
        if not self.election.answered_once:
            return "coordination: waiting for etcd to answer"
        return None

    def status(self) -> dict[str, Any]:
        """Who leads, this daemon's lease, etcd's health, what fencing refused."""
        election = self.election
        return {
            "daemon": self.name,
            "leader": election.leader,
            "leading": election.holding(),
            "hold": election.hold(),
            "token": election.token or None,
            "term": election.term,
            "lease_remaining_seconds": self._remaining(),
            "leader_since": election.became_leader_at,
            "etcd": {"endpoints": list(self.settings.endpoints), "problem": election.unavailable()},
            "fenced_actions": dict(self.fence.refused),
            "watches": {
                "leader_key": _watch_status(self.election.follower),
                "pauses": _watch_status(self.pauses.follower),
            },
            "etcd_requests": dict(self.client.requests),
        }

    def pause_shown(self, group: str) -> dict[str, Any] | None:
        """Who paused `group` and when (reason, by, at), as stored in etcd; None when not paused."""
        return self.pauses.shown(group)

    def _remaining(self) -> float:
        if not self.election.holding():
            return 0.0
        return max(0.0, self.election.deadline - time.monotonic())

    def snapshot(self) -> telemetry.Snapshot:
        """The metrics' view."""
        election = self.election
        return telemetry.Snapshot(
            name=self.name,
            leading=election.holding(),
            etcd_up=election.unavailable() is None,
            leader=election.leader,
            groups=tuple(self.groups()),
            lease_remaining=self._remaining(),
            leadership_changes=self.changes,
            fenced=dict(self.fence.refused),
            watch_reconnects={name: f.reconnects for name, f in self._followers()},
            watch_compactions={name: f.compactions for name, f in self._followers()},
            etcd_requests=dict(self.client.requests),
        )

    def _followers(self) -> list[tuple[str, Follower]]:
        """The watches this daemon keeps open, by the name the metrics give them."""
        found = [("leader_key", self.election.follower), ("pauses", self.pauses.follower)]
        return [(name, follower) for name, follower in found if follower is not None]


def _watch_status(follower: Follower | None) -> dict[str, Any] | None:
    """A watch: open on which member, how often it was reopened, what broke it last."""
    if follower is None:
        return None
    return {
        "following": follower.endpoint is not None,
        "endpoint": follower.endpoint,
        "reconnects": follower.reconnects,
        "compactions": follower.compactions,
        "problem": follower.problem or None,
    }
