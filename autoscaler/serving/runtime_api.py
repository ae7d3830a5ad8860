"""HAProxy's runtime API (the admin `stats socket`): one command per connection, answers as text.

This module only speaks the protocol and parses `show stat`; what the answers mean for a member
lives in `serving.haproxy`. A connection failure or a timeout is `BalancerUnreachable`: the caller
never knows whether a command it could not send took effect, so every caller is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from dataclasses import dataclass

from autoscaler import errors
from autoscaler.policy import serving as serving_spec


@dataclass(frozen=True, slots=True)
class ServerStat:
    """One server of a backend, from `show stat` (CSV)."""

    name: str
    status: str
    """UP, 'UP 1/3', DOWN, DRAIN, MAINT, 'no check'..."""
    check_status: str
    """L4OK, L7OK, L4CON, L7STS, INI, or empty."""
    sessions: int
    """scur: sessions open now."""
    queued: int
    """qcur: requests waiting for this server."""
    address: str
    """'ip:port' as HAProxy holds it."""
    server_id: int

    @property
    def check_passed(self) -> bool:
        """The latest health check succeeded."""
        return self.check_status in ("L4OK", "L6OK", "L7OK", "L7OKC")

    @property
    def idle(self) -> bool:
        """No session and no queue: nothing is lost when it goes."""
        return self.sessions == 0 and self.queued == 0


class RuntimeApi:
    """A client of one HAProxy admin socket (UNIX path, or loopback host:port)."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout

    async def ask(self, command: str) -> str:
        """Send one command line (commands may be joined with ';') and return the whole answer."""
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await self._connect()
                try:
                    writer.write(command.encode() + b"\n")
                    await writer.drain()
                    answer = await reader.read()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            raise errors.BalancerUnreachable(
                f"HAProxy at {self.address}: {exc or type(exc).__name__}"
            ) from exc
        return answer.decode(errors="replace")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.startswith("/"):
            return await asyncio.open_unix_connection(self.address)
        match = serving_spec.LOOPBACK_TCP.match(self.address)
        if match is None:  # the policy refuses these; a guard against a caller that skipped it
            raise OSError(f"not a loopback admin socket: {self.address}")
        return await asyncio.open_connection(match.group(1).strip("[]"), int(match.group(2)))

    async def backends(self) -> list[str]:
        """The backend names HAProxy runs (`show backend`)."""
        answer = await self.ask("show backend")
        return [line.strip() for line in answer.splitlines() if line.strip() and not line.startswith("#")]

    async def stats(self, backend: str) -> dict[str, ServerStat]:
        """Every server of the backend by name (`show stat <backend> 4 -1`)."""
        answer = await self.ask(f"show stat {backend} 4 -1")
        if not answer.startswith("# pxname"):
            raise errors.BalancerRefused(f"HAProxy at {self.address}: show stat {backend}: {answer.strip()}")
        rows = csv.DictReader(io.StringIO(answer.removeprefix("# ")))
        servers = (_server(row) for row in rows if row.get("pxname") == backend)
        return {s.name: s for s in servers if s.name not in ("BACKEND", "FRONTEND")}


def _server(row: dict[str, str]) -> ServerStat:
    """One CSV row of `show stat` as a ServerStat."""
    return ServerStat(
        name=row["svname"],
        status=row.get("status", ""),
        check_status=row.get("check_status", "").lstrip("* "),
        sessions=_int(row.get("scur")),
        queued=_int(row.get("qcur")),
        address=row.get("addr", ""),
        server_id=_int(row.get("sid")),
    )


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
