"""The built-in HAProxy driver: members join a backend through the runtime API, staged until checked.

HAProxy 2.6 counts a server UP before its first health check, so a new server is added in DRAIN
(checked, no load-balanced traffic) and set ready only once its check passed; every dynamic server
gets an explicit `id` (2.6 `balance random` loses one without). Dynamic servers vanish on every
reload, so registration is re-run each cycle and re-adds what is missing. Two modes:

* dynamic: `add server` / `del server` (the backend needs a dynamic algorithm, e.g. roundrobin);
  our servers are named `<prefix>-<first 8 hex of the UUID>`.
* template: `server-template <prefix> 1-N` slots are claimed with `set server addr` and freed by
  MAINT; a slot is matched to its member by address and port.

Servers that are not ours (other names, other slots in use by the config) are never touched.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Collection

from autoscaler import errors
from autoscaler.policy import serving as serving_spec
from autoscaler.serving import Member
from autoscaler.serving.runtime_api import RuntimeApi, ServerStat

ID_BASE = 1_000_000
"""Explicit server ids start here, above any a hand-written config uses."""
ID_SPAN = 2**31 - 1 - ID_BASE
DELETE_ATTEMPTS = 20
DELETE_PAUSE = 0.1
"""A server in MAINT may keep connections for a moment; `del server` is asked again meanwhile."""


def server_id(uuid: str) -> int:
    """A stable id for the member's server (the same after every reload)."""
    return ID_BASE + int(hashlib.sha256(uuid.encode()).hexdigest()[:12], 16) % ID_SPAN


class Haproxy:
    """One backend of one HAProxy (see `serving.Balancer`)."""

    def __init__(self, config: serving_spec.Haproxy, group: str, port: int) -> None:
        self.config = config
        self.backend = config.backend
        self.prefix = config.server_prefix or f"as-{group}"
        self.port = port
        self.api = RuntimeApi(config.socket, config.command_timeout)
        self.label = f"haproxy:{config.backend}"
        mine = (
            rf"{re.escape(self.prefix)}-[0-9a-f]{{8}}"
            if config.mode == "dynamic"
            else rf"{re.escape(self.prefix)}\d+"
        )
        self._ours = re.compile(mine)

    # --- startup ----------------------------------------------------------------------------

    async def verify(self) -> None:
        """The backend exists and takes our servers (dynamic), or has our template slots."""
        if self.backend not in await self.api.backends():
            raise errors.BalancerMisconfigured(f"{self._where()}: no backend {self.backend!r}")
        if self.config.mode == "template":
            if not any(self._ours.fullmatch(name) for name in await self.api.stats(self.backend)):
                raise errors.BalancerMisconfigured(
                    f"{self._where()}: backend {self.backend!r} has no server-template slots named"
                    f" '{self.prefix}<n>' (add 'server-template {self.prefix} 1-32 127.0.0.1:1'"
                    " with 'default-server check disabled')"
                )
            return
        await self._probe_dynamic()

    async def _probe_dynamic(self) -> None:
        """Add and delete a sentinel server: the only sure test that the backend takes dynamic ones."""
        probe = f"{self.backend}/{self.prefix}-probe"
        answer = await self.api.ask(f"add server {probe} 127.0.0.1:1")
        if "dynamic load balancing" in answer:
            raise errors.BalancerMisconfigured(
                f"{self._where()}: backend {self.backend!r} cannot take dynamic servers ({answer.strip()});"
                " use a dynamic algorithm such as 'balance roundrobin', or set mode: template with a"
                f" 'server-template {self.prefix} 1-N' line in the backend"
            )
        if "registered" not in answer and "Already exists" not in answer:
            raise errors.BalancerRefused(f"{self._where()}: add server {probe}: {answer.strip()}")
        await self.api.ask(f"set server {probe} state maint; del server {probe}")

    # --- registration ------------------------------------------------------------------------

    async def register(self, member: Member) -> bool:
        """Stage the member in DRAIN until its check passes, then ready; True once it takes traffic."""
        stats = await self.api.stats(self.backend)
        name, stat = self._find(member, stats)
        if stat is None:
            if name is None:
                raise errors.BalancerRefused(
                    f"{self._where()}: no free server-template slot for {member.name}"
                )
            await self._stage_new(name, member)
            return False
        target = f"{member.address}:{member.port}"
        if stat.address != target or stat.status == "MAINT":
            await self._restage(name or stat.name, member)
            return False
        if stat.status.startswith("UP"):
            return True
        if stat.status.startswith("DRAIN") and stat.check_passed:
            await self._set(stat.name, "state ready")
            return (await self._stat(stat.name)).status.startswith("UP")
        return False  # still checked in DRAIN, or DOWN: no traffic, not yet capacity

    def _find(self, member: Member, stats: dict[str, ServerStat]) -> tuple[str | None, ServerStat | None]:
        """The member's server (or, in template mode, the slot to claim) and its stat if present."""
        if self.config.mode == "dynamic":
            name = self.server_name(member)
            return name, stats.get(name)
        target = f"{member.address}:{member.port}"
        slots = [s for s in stats.values() if self._ours.fullmatch(s.name)]
        held = next((s for s in slots if s.address == target and s.status != "MAINT"), None)
        if held is not None:
            return held.name, held
        free = next((s for s in slots if s.status == "MAINT"), None)
        return (free.name if free is not None else None), None

    def server_name(self, member: Member) -> str:
        """The dynamic server's name: the prefix and the first 8 hex digits of the UUID."""
        return f"{self.prefix}-{member.uuid[:8]}"

    async def _stage_new(self, name: str, member: Member) -> None:
        """Add (dynamic) or claim (template) a server, checked and in DRAIN."""
        if self.config.mode == "template":
            await self._restage(name, member)
            return
        check = self.config.check
        answer = await self.api.ask(
            f"add server {self.backend}/{name} {member.address}:{member.port} id {server_id(member.uuid)}"
            f" check inter {int(check.inter * 1000)}ms rise {check.rise} fall {check.fall}"
        )
        if "registered" not in answer and "Already exists" not in answer:
            raise errors.BalancerRefused(f"{self._where()}: add server {name}: {answer.strip()}")
        await self._set(name, "state drain", enable_health=True)

    async def _restage(self, name: str, member: Member) -> None:
        """Point the server at the member and put it in DRAIN with checks on."""
        await self._set(name, "state maint")
        await self._set(name, f"addr {member.address} port {member.port}")
        await self._set(name, "state drain", enable_health=True)

    # --- leaving -----------------------------------------------------------------------------

    async def drain(self, member: Member) -> None:
        """No new traffic for the member; a member not held here is fine."""
        stat = await self._held(member)
        if stat is not None and stat.status != "MAINT":
            await self._set(stat.name, "state drain")

    async def idle(self, member: Member) -> bool:
        """No session and no queue for the member (True when not held here)."""
        stat = await self._held(member)
        return stat is None or stat.idle

    async def remove(self, member: Member, force: bool) -> None:
        """MAINT (cutting sessions when forced), then delete (dynamic) or leave the slot free."""
        stat = await self._held(member)
        if stat is not None:
            await self._take_out(stat.name, force)

    async def missing(self, members: Collection[Member]) -> list[Member]:
        """Members with no server here (in any state: an operator's MAINT is left as it is)."""
        stats = await self.api.stats(self.backend)
        ours = [s for s in stats.values() if self._ours.fullmatch(s.name)]
        if self.config.mode == "template":  # a free slot keeps its last address: it holds nobody
            ours = [s for s in ours if s.status != "MAINT"]
        held = {self._stat_key(s) for s in ours}
        return [m for m in members if self._key(m) not in held]

    async def prune(self, live: Collection[Member]) -> list[str]:
        """Take out our servers that belong to no live member (their domains are gone)."""
        stats = await self.api.stats(self.backend)
        keep = {self._key(m) for m in live}
        gone = [
            s
            for s in stats.values()
            if self._ours.fullmatch(s.name)
            and s.name != f"{self.prefix}-probe"
            and self._stat_key(s) not in keep
            and not (self.config.mode == "template" and s.status == "MAINT")
        ]
        for stat in gone:
            await self._take_out(stat.name, force=True)
        return [s.name for s in gone]

    async def _take_out(self, name: str, force: bool) -> None:
        """MAINT, optionally shut the sessions, and delete a dynamic server (refused while it has any)."""
        await self._set(name, "state maint")
        if force:
            await self.api.ask(f"shutdown sessions server {self.backend}/{name}")
        if self.config.mode == "template":
            return
        for _ in range(DELETE_ATTEMPTS):  # idle connections close shortly after MAINT
            answer = await self.api.ask(f"del server {self.backend}/{name}")
            if "deleted" in answer or "No such server" in answer:
                return
            if "still has connections" not in answer:
                break
            await asyncio.sleep(DELETE_PAUSE)
        raise errors.BalancerRefused(f"{self._where()}: del server {name}: {answer.strip()}")

    # --- helpers -----------------------------------------------------------------------------

    async def _held(self, member: Member) -> ServerStat | None:
        """The member's server, if this backend holds it."""
        stats = await self.api.stats(self.backend)
        if self.config.mode == "dynamic":
            return stats.get(self.server_name(member))
        target = f"{member.address}:{member.port}"
        return next((s for s in stats.values() if self._ours.fullmatch(s.name) and s.address == target), None)

    def _key(self, member: Member) -> str:
        return (
            self.server_name(member) if self.config.mode == "dynamic" else f"{member.address}:{member.port}"
        )

    def _stat_key(self, stat: ServerStat) -> str:
        return stat.name if self.config.mode == "dynamic" else stat.address

    async def _stat(self, name: str) -> ServerStat:
        stat = (await self.api.stats(self.backend)).get(name)
        if stat is None:
            raise errors.BalancerRefused(f"{self._where()}: server {name} vanished")
        return stat

    async def _set(self, name: str, what: str, enable_health: bool = False) -> None:
        """`set server <be>/<name> <what>`; an empty answer is HAProxy's success."""
        command = f"set server {self.backend}/{name} {what}"
        if enable_health:
            command = f"enable health {self.backend}/{name}; {command}"
        answer = (await self.api.ask(command)).strip()
        if answer and "changed from" not in answer and "no need to change" not in answer:
            raise errors.BalancerRefused(f"{self._where()}: {command}: {answer}")

    def _where(self) -> str:
        return f"HAProxy at {self.config.socket}"
