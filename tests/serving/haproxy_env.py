"""A real HAProxy on loopback, and loopback HTTP servers standing in for members.

Each test gets its own HAProxy (master-worker, so `reload()` is a real SIGUSR2 reload), with its
admin socket in the test's directory and a frontend on a port chosen free at runtime. Members are
aiohttp servers on 127.0.0.N, all on one port (as guests share a service port), each counting the
requests it served, so a test can prove who got traffic and when.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from autoscaler.serving import Member, haproxy_process
from autoscaler.serving.runtime_api import RuntimeApi

SLOTS = """\
backend slots
  balance static-rr
  option httpchk GET /health
  default-server check disabled
  server-template tpl 1-4 127.0.0.1:1
"""
"""Pre-declared server-template slots, for the driver's template mode."""


def config(admin_socket: str, port: int, balance: str) -> str:
    """Backend `web` (a disabled placeholder server so it is never empty) and the template slots."""
    web = haproxy_process.backend("web", balance) + "  server keep 127.0.0.1:1 disabled\n"
    return haproxy_process.config(admin_socket, port, web + SLOTS)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_until(condition: object, deadline: float, what: str, step: float = 0.05) -> None:
    """Await `condition()` (sync or async) until true, or fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        result = condition()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(step)


class HaproxyServer(haproxy_process.HaproxyProcess):
    """One HAProxy process in master-worker mode, private to a test."""

    def __init__(self, workdir: Path, balance: str = "roundrobin") -> None:
        self.port = free_port()
        socket_path = str(workdir / "admin.sock")
        super().__init__(workdir, config(socket_path, self.port, balance), socket_path)
        self.socket = socket_path
        self.api = RuntimeApi(self.socket, 5.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        """Start the process (see `start`); a skip when HAProxy is not installed."""
        if haproxy_process.binary() is None:
            pytest.skip("haproxy is not installed (scripts/install-system-packages.sh)")
        super().spawn()

    async def reload(self) -> None:
        """A real reload (SIGUSR2 to the master): every dynamic server is gone afterwards."""
        assert self.process is not None
        before = await self.worker_pid()
        self.process.send_signal(signal.SIGUSR2)

        async def new_worker() -> bool:
            try:
                return await self.worker_pid() not in (before, "")
            except Exception:
                return False

        await wait_until(new_worker, 10.0, "the new worker")

    async def worker_pid(self) -> str:
        """The pid of the worker answering the admin socket."""
        info = await self.api.ask("show info")
        return next(
            (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Pid:")), ""
        )


@dataclass
class Backend:
    """A loopback HTTP server standing in for one member: `/`, `/health`, `/slow`, with counters."""

    address: str
    port: int
    served: int = 0
    healthy: bool = True
    first_served_at: float | None = None
    runner: web.AppRunner | None = None
    log: list[float] = field(default_factory=list)
    boot: float = 0.0
    """Seconds after its first health check during which it answers 503 (a service still starting)."""
    first_checked_at: float | None = None
    healthy_since: float | None = None
    """When /health first answered 200."""

    def member(self, name: str, uuid: str) -> Member:
        return Member(name=name, uuid=uuid, address=self.address, port=self.port)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._root)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.address, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def _count(self) -> None:
        self.served += 1
        now = time.time()
        self.log.append(now)
        if self.first_served_at is None:
            self.first_served_at = now

    async def _root(self, _request: web.Request) -> web.Response:
        self._count()
        return web.Response(text=self.address)

    async def _slow(self, request: web.Request) -> web.Response:
        self._count()
        await asyncio.sleep(float(request.query.get("s", "0.3")))
        return web.Response(text=self.address)

    async def _health(self, _request: web.Request) -> web.Response:
        now = time.time()
        if self.first_checked_at is None:
            self.first_checked_at = now
        ok = self.healthy and now - self.first_checked_at >= self.boot
        if ok and self.healthy_since is None:
            self.healthy_since = now
        return web.Response(status=200 if ok else 503, text="ok")

    async def _metrics(self, _request: web.Request) -> web.Response:
        """Its own request counter, as a guest's exporter would report it."""
        text = f"# TYPE member_requests_total counter\nmember_requests_total {self.served}\n"
        return web.Response(text=text, content_type="text/plain")


async def start_backends(count: int, first: int = 2) -> list[Backend]:
    """`count` member stand-ins on 127.0.0.<first>.., all on one free port."""
    port = free_port()
    backends = [Backend(f"127.0.0.{first + i}", port) for i in range(count)]
    for backend in backends:
        await backend.start()
    return backends


@dataclass
class LoadResult:
    """What a bounded load run saw."""

    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


async def load(url: str, workers: int, seconds: float, cap: int, path: str = "/") -> LoadResult:
    """Send at most `cap` requests for at most `seconds`, from `workers` clients (loopback only)."""
    assert url.startswith("http://127."), "load goes to loopback only"
    result = LoadResult()
    end = time.monotonic() + seconds
    sent = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while time.monotonic() < end and sent < cap:
            sent += 1
            try:
                async with session.get(url + path) as response:
                    await response.read()
                    if response.status == 200:
                        result.ok += 1
                    else:
                        result.failed += 1
                        result.errors.append(str(response.status))
            except aiohttp.ClientError as exc:
                result.failed += 1
                result.errors.append(type(exc).__name__)

    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(workers)))
    return result


async def haproxy_in(tmp_path: Path, balance: str = "roundrobin") -> AsyncIterator[HaproxyServer]:
    """Fixture body: a started HAProxy, stopped afterwards."""
    server = HaproxyServer(tmp_path, balance)
    await server.start()
    try:
        yield server
    finally:
        server.stop()
