"""Leader election on one etcd key: campaign in a transaction, keep the lease alive, step down early.

One lease per daemon (a session) carries the leader key `<prefix>/leader`. Campaigning is one
transaction: if the key does not exist, put it with our lease; either way read it back. The key's
create revision is the fencing token: it changes every time leadership changes hands, so a fence
that compares it proves this daemon still holds the very leadership it won.

Leadership is believed locally only until a conservative deadline: the monotonic time a keepalive
was *sent* plus the TTL etcd granted (etcd started its countdown at or after that moment), less a
margin. The keepalive runs in the same event loop as the actions on purpose: a stalled loop (a
SIGSTOP, a blocking call) must let leadership lapse, not keep it alive.

The leader repeats its campaign transaction every `campaign_interval`: a linearizable proof that
etcd still has quorum and still names it (a keepalive renews the lease but reads no key). A
standby instead watches the leader key for its deletion (the lease expired or was revoked) and
campaigns the moment it goes. Otherwise it campaigns only every `standby_poll_interval`, a
safety net for a watch stuck on a hung member, whose stream goes silent without breaking (the
watch also moves as soon as the standby's other requests time out there and go to another
member). The watch only says when to campaign; the transaction alone decides who leads, so a
lost, late or broken watch can delay a take-over but never make a second leader. Without the
watch (`watch: false`) a standby campaigns every `campaign_interval`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from autoscaler.coordination import etcd
from autoscaler.coordination.watch import Follower
from autoscaler.errors import CoordinationUnavailable

log = structlog.get_logger("autoscaler.coordination")
RETRY = 0.2
"""Seconds between two tries while etcd does not answer."""
MOVED_CHECK = 0.5
"""Seconds between a standby's looks whether its requests left the member its watch is on."""


@dataclass(frozen=True, slots=True)
class Timings:
    """How leases are sized and renewed."""

    ttl: int = 5
    margin: float = 1.0
    campaign_interval: float = 0.25
    """The leader's proof of leadership (and a standby's poll without the watch)."""
    standby_watch: bool = True
    """Whether a standby watches the leader key instead of polling it."""
    standby_poll_interval: float = 5.0
    """With the watch: how often a standby campaigns anyway, in case the watch missed the deletion."""


class Election:
    """This daemon's standing: leader (with a token and a deadline), standby, or cut off from etcd."""

    def __init__(
        self,
        client: etcd.Client,
        key: str,
        name: str,
        timings: Timings,
        on_change: Callable[[bool], None] = lambda _leading: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.key = key
        self.name = name
        self.timings = timings
        self.on_change = on_change
        self.clock = clock
        self.lease = 0
        self.token = 0
        """The leader key's create revision while we hold it; 0 otherwise."""
        self.deadline = 0.0
        """Monotonic time until which etcd certainly keeps our lease."""
        self.leader: str | None = None
        """Who holds the key, as last read (None: nobody, or unknown)."""
        self.problem = ""
        """Why etcd did not answer the last request ("" while it answers)."""
        self.answered_once = False
        """Whether etcd has answered this daemon at all yet."""
        self.failing_since: float | None = None
        """Monotonic time of the first of the unanswered requests in a row."""
        self.term = 0
        """Counts the times this daemon became leader."""
        self.became_leader_at: float | None = None
        self.campaigns = 0
        """Campaign transactions sent."""
        self.follower: Follower | None = None
        """The standby's watch of the leader key (None when polling)."""
        if timings.standby_watch:
            self.follower = Follower(client, key, self._key_changed, deletes_only=True)
        self._key_gone = asyncio.Event()
        self._resigned = False

    # --- what the rest of the daemon asks --------------------------------------------------------

    def holding(self) -> bool:
        """True while this daemon leads and its lease is certainly valid for `margin` more seconds."""
        return self.token != 0 and self.clock() + self.timings.margin < self.deadline

    def valid_until(self) -> float:
        """The monotonic time after which no action may start on the current proof of leadership."""
        return self.deadline - self.timings.margin

    def hold(self) -> str | None:
        """Why this daemon may not act now, or None when it leads."""
        if self.holding():
            return None
        if self.unavailable():
            return "etcd_unavailable"
        return "standby"

    def unavailable(self) -> str | None:
        """Why etcd is of no use now (no member answered for a whole TTL, or no quorum), or None.

        Shorter gaps (a raft election after the etcd leader died takes 1-3 s) are not reported:
        with every member listed they cost the leader nothing.
        """
        since = self.failing_since
        if since is None or self.clock() - since < self.timings.ttl:
            return None
        return self.problem

    def deposed(self, why: str) -> None:
        """A fence found another holder: stop believing at once (the next campaign says who)."""
        if self.token:
            log.warning("leadership_lost", reason=why, token=self.token)
            self._step_down()

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Take part in the election until cancelled: one session (lease) after another."""
        try:
            while not self._resigned:
                try:
                    why = await self._session()
                except CoordinationUnavailable as exc:
                    why = str(exc)
                    self._unanswered(why)
                    await asyncio.sleep(RETRY)
                self._lease_ended(why)
        finally:
            if self.follower is not None:
                await self.follower.stop()

    async def resign(self) -> None:
        """Stop at once and revoke the lease: a standby's watch sees the key deleted and it takes over."""
        self._resigned = True
        lease, self.lease = self.lease, 0
        was_leading = self.token != 0
        self._step_down()
        if lease:
            with contextlib.suppress(CoordinationUnavailable):
                await self.client.revoke(lease)
            log.info("leadership_resigned" if was_leading else "session_closed", lease=lease)

    async def _session(self) -> str:
        sent = self.clock()
        lease, granted = await self.client.grant(self.timings.ttl)
        self.lease, self.deadline = lease, sent + granted
        self._answered()
        keeper = asyncio.create_task(self._keep_alive(lease, granted), name="etcd-keepalive")
        try:
            while not keeper.done():
                self._key_gone.clear()  # a deletion seen from here on is not missed
                revision = await self._campaign(lease)
                await self._until_next_campaign(keeper, revision)
            return keeper.result()
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_alive(self, lease: int, granted: int) -> str:
        """Renew every third of the TTL; returns why the lease is lost (expired, or unrenewable)."""
        while True:
            await asyncio.sleep(max(0.2, granted / 3))
            while True:
                sent = self.clock()
                try:
                    granted = await self.client.keepalive(lease)
                except CoordinationUnavailable as exc:
                    self._unanswered(str(exc))
                    if self.clock() >= self.deadline:
                        return f"lease not renewed before it expired: {exc}"
                    await asyncio.sleep(RETRY)
                    continue
                if granted <= 0:
                    return "lease expired (this daemon was stalled or cut off longer than the TTL)"
                self.deadline = sent + granted
                self._answered()
                break

    async def _until_next_campaign(self, keeper: asyncio.Task[str], revision: int) -> None:
        """Wait for the next campaign: the leader's proof interval, or a standby's watch.

        `revision` is the one the last campaign read the key at (0: it failed); a standby's watch
        starts after it, so a deletion between the campaign and the watch's start is still seen.
        """
        follower = self.follower
        if follower is None or self.token or not revision:
            if follower is not None and self.token:
                await follower.stop()  # the leader polls: its proof must be linearizable anyway
            await asyncio.wait({keeper}, timeout=self.timings.campaign_interval)
            return
        follower.follow(revision + 1)
        end = self.clock() + self.timings.standby_poll_interval
        gone = asyncio.create_task(self._key_gone.wait())
        try:
            while (left := end - self.clock()) > 0:
                if follower.endpoint not in (None, self.client.endpoint):
                    await follower.reopen()  # our requests left that member: it may be hung
                done, _ = await asyncio.wait(
                    {keeper, gone}, timeout=min(left, MOVED_CHECK), return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    return
        finally:
            gone.cancel()

    def _key_changed(self, what: str, _event: etcd.WatchEvent | None) -> None:
        """The watch saw the key deleted, or may have missed it: campaign now."""
        if what != "put":
            self._key_gone.set()

    async def _campaign(self, lease: int) -> int:
        """Try to take the key; learn who holds it; the revision read at (0: no answer).

        Errors are remembered, not raised."""
        self.campaigns += 1
        me = json.dumps({"name": self.name, "lease": lease})
        try:
            result = await self.client.txn(
                [etcd.created_at(self.key, 0)],
                [etcd.put(self.key, me, lease), etcd.get(self.key)],
                [etcd.get(self.key)],
            )
        except CoordinationUnavailable as exc:
            if "lease not found" in str(exc):  # etcd answered: our lease expired (the keeper ends it)
                self._step_down()
                return 0
            self._unanswered(str(exc))
            return 0
        self._answered()
        found = result.ranges[-1] if result.ranges else []
        holder = found[0] if found else None
        if holder is not None and holder.lease == lease and self.lease == lease:
            self._lead(holder.create_revision)
        else:
            if self.token:
                self.deposed("another daemon holds the leader key")
            self.leader = _name(holder.value) if holder is not None else None
        return result.revision

    # --- transitions ------------------------------------------------------------------------------

    def _lead(self, token: int) -> None:
        self.leader = self.name
        if self.token == token:
            return
        self.token = token
        self.term += 1
        self.became_leader_at = time.time()
        log.info("leadership_acquired", token=token, lease=self.lease, term=self.term)
        self.on_change(True)

    def _step_down(self) -> None:
        if self.token:
            self.token = 0
            self.leader = None
            self.on_change(False)

    def _lease_ended(self, why: str) -> None:
        if self.token:
            log.warning("leadership_lost", reason=why)
        self._step_down()
        self.lease = 0

    def _unanswered(self, why: str) -> None:
        reported = self.unavailable() is not None
        if self.failing_since is None:
            self.failing_since = self.clock()
        self.problem = why
        if not reported and self.unavailable() is not None:
            log.warning("etcd_unavailable", error=why, seconds=self.timings.ttl)

    def _answered(self) -> None:
        if self.unavailable() is not None:
            log.info("etcd_available_again")
        self.problem = ""
        self.failing_since = None
        self.answered_once = True


def _name(value: str) -> str | None:
    """The daemon name in a leader key's value."""
    try:
        data = json.loads(value)
    except ValueError:
        return value or None
    return str(data.get("name")) if isinstance(data, dict) else None
