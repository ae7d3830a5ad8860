"""The seam between members and the load balancers that send them traffic.

A `Balancer` stages a new member until its own health check passes, confirms it, drains it and
removes it; every call is idempotent, so a restarted daemon can repeat any of them. The built-in
driver is `serving.haproxy` (HAProxy's runtime API); `serving.hooks` runs lifecycle hooks.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Member:
    """One member as a balancer sees it."""

    name: str
    """The domain name."""
    uuid: str
    """The domain UUID: the member's instance id."""
    address: str
    """The IP address the balancer reaches it at."""
    port: int
    """The service port."""


class Balancer(Protocol):
    """One backend of one load balancer that a group's members join."""

    label: str
    """A short name for logs and the status page, e.g. 'haproxy:webmail'."""

    async def verify(self) -> None:
        """Check the backend exists and can take our servers; BalancerMisconfigured if not."""
        ...

    async def register(self, member: Member) -> bool:
        """Add the member staged (no traffic); True once its check passed and it takes traffic."""
        ...

    async def drain(self, member: Member) -> None:
        """Send no new traffic to the member (a member the balancer does not hold is fine)."""
        ...

    async def idle(self, member: Member) -> bool:
        """True when the member has no sessions and no queue there (or is not held there)."""
        ...

    async def remove(self, member: Member, force: bool) -> None:
        """Take the member out for good; `force` cuts the sessions still open."""
        ...

    async def missing(self, members: Collection[Member]) -> list[Member]:
        """Those of `members` this balancer does not hold at all (e.g. after a reload)."""
        ...

    async def prune(self, live: Collection[Member]) -> list[str]:
        """Drain and remove our servers that belong to none of `live`; never touch others'.

        Returns the names of the servers taken out.
        """
        ...
