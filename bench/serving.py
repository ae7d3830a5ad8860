"""Serving capacity: clone request to first request served, scale-in to domain gone, a whole ramp.

The daemon's own path, measured end to end on this machine: libvirt's test driver runs the
domains (no guest boot), a real HAProxy 2.6 balances on loopback, and loopback HTTP servers answer
for the members, each at the address its domain is given. So the figures are what registration
(probe, HAProxy staging, its health checks), draining and the destroy sequence cost; a real guest
adds its boot time to the first table and nothing to the others. Every request goes to loopback,
bounded in number and time.

Tables: clone request -> first request served (p50/p90 over N clones, cold clone and warm pool
side by side); scale-in decision -> domain gone (idle and busy members); failed requests over a
ramp 1 -> 4 -> 1 under load (expected 0).
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.table import Table

from autoscaler.policy import spec
from autoscaler.serving import haproxy_process
from autoscaler.targets import kvm
from autoscaler.targets.inventory import Record

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "libvirt" / "host.xml"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Member:
    """A loopback HTTP server answering for one domain."""

    address: str
    port: int
    served: int = 0
    first_at: float | None = None
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._serve)
        app.router.add_get("/health", lambda _r: self._ok())
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.address, self.port).start()

    async def _ok(self) -> web.Response:
        return web.Response(text="ok")

    async def _serve(self, request: web.Request) -> web.Response:
        self.served += 1
        if self.first_at is None:
            self.first_at = time.monotonic()
        await asyncio.sleep(float(request.query.get("s", "0")))
        return web.Response(text=self.address)


@dataclass
class Addresses:
    """Each new domain gets the next loopback member (KvmTarget's address seam)."""

    free: list[Member]
    by_uuid: dict[str, Member] = field(default_factory=dict)

    async def __call__(self, record: Record) -> str | None:
        if record.uuid not in self.by_uuid:
            self.by_uuid[record.uuid] = self.free.pop(0)
        return self.by_uuid[record.uuid].address


@dataclass
class Load:
    """A bounded load generator through HAProxy: counts successes and failures."""

    url: str
    workers: int
    cap: int
    seconds: float
    ok: int = 0
    failed: int = 0

    async def run(self) -> None:
        end = time.monotonic() + self.seconds
        sent = 0
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as s:

            async def worker() -> None:
                nonlocal sent
                while time.monotonic() < end and sent < self.cap:
                    sent += 1
                    try:
                        async with s.get(self.url) as reply:
                            await reply.read()
                            if reply.status == 200:
                                self.ok += 1
                            else:
                                self.failed += 1
                                await asyncio.sleep(0.05)  # no server yet: HAProxy's 503
                    except aiohttp.ClientError:
                        self.failed += 1

            await asyncio.gather(*(worker() for _ in range(self.workers)))


@asynccontextmanager
async def haproxy(workdir: pathlib.Path) -> AsyncIterator[tuple[str, int]]:
    """A private HAProxy on loopback; yields (admin socket, frontend port)."""
    socket_path, port = str(workdir / "admin.sock"), free_port()
    text = haproxy_process.config(socket_path, port, haproxy_process.backend("web"))
    server = haproxy_process.HaproxyProcess(workdir, text, socket_path)
    await server.start()
    try:
        yield socket_path, port
    finally:
        server.stop()


def policy(socket_path: str, port: int, pool: int, inter: float) -> spec.GroupPolicy:
    return spec.GroupPolicy.model_validate(
        {
            "group": "web",
            "golden": "golden-web.qcow2",
            "template": "web-template",
            "min": 0,
            "max": 40,
            "warmup": 0.0,
            "readiness": {"interval": 0.05, "timeout": 30.0},
            "warm_pool": {"size": pool, "state": "paused"},
            "serving": {
                "port": port,
                "balancers": [
                    {
                        "kind": "haproxy",
                        "socket": socket_path,
                        "backend": "web",
                        "check": {"inter": inter, "rise": 2},
                    }
                ],
                "launch_timeout": 60.0,
                "drain_timeout": 30.0,
                "retry_interval": 0.1,
            },
        }
    )


def host_uri(workdir: pathlib.Path) -> str:
    text = FIXTURE.read_text().replace("<memory>4194304</memory>", f"<memory>{64 * 1024 * 1024}</memory>")
    path = workdir / "host.xml"
    path.write_text(text)
    return f"test://{path}"


async def until(condition: object, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while True:
        result = condition()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > end:
            raise TimeoutError("benchmark condition not met")
        await asyncio.sleep(0.01)


def settings() -> kvm.KvmSettings:
    return kvm.KvmSettings(
        memory_reserve=256 * 1024 * 1024, watch_interval=0.02, balancer_interval=0.5, drain_poll=0.05
    )


@dataclass
class World:
    """One benchmark's group: its target, policy, member stand-ins and HAProxy frontend port."""

    target: kvm.KvmTarget
    group: spec.GroupPolicy
    addresses: Addresses
    front: int


@asynccontextmanager
async def world(
    workdir: pathlib.Path, network: int, members: int, pool: int, inter: float
) -> AsyncIterator[World]:
    """`members` loopback stand-ins on 127.0.<network>.N, a private HAProxy and a started target."""
    port = free_port()
    stand_ins = [Member(f"127.0.{network}.{i + 1}", port) for i in range(members)]
    for m in stand_ins:
        await m.start()
    try:
        addresses = Addresses(list(stand_ins))
        async with haproxy(workdir) as (socket_path, front):
            group = policy(socket_path, port, pool, inter)
            target = kvm.KvmTarget(
                host_uri(workdir), settings=settings(), policies=[group], address_of=addresses
            )
            await target.start()
            try:
                yield World(target, group, addresses, front)
            finally:
                await target.close()
    finally:
        for m in stand_ins:
            if m.runner:
                await m.runner.cleanup()


async def first_served(workdir: pathlib.Path, clones: int, pooled: bool, inter: float) -> list[float]:
    """Seconds from each clone request to the first request its member served (one at a time)."""
    seconds: list[float] = []
    async with world(workdir, 1, clones, clones if pooled else 0, inter) as w:
        load = Load(f"http://127.0.0.1:{w.front}/", workers=4, cap=200_000, seconds=clones * 10.0)
        runner = asyncio.create_task(load.run())
        try:
            if pooled:
                await _fill(w.target, clones)
            for _ in range(clones):
                started = time.monotonic()
                [name] = (await w.target.scale_out(w.group, 1)).done
                record = w.target._cache.find("web", name)
                assert record is not None
                await until(lambda uuid=record.uuid: _served(w.addresses, uuid))
                member = w.addresses.by_uuid[record.uuid]
                assert member.first_at is not None
                seconds.append(member.first_at - started)
        finally:
            runner.cancel()
    return seconds


async def scale_in_times(workdir: pathlib.Path, busy: bool, rounds: int) -> list[float]:
    """Seconds from a scale-in call to the domain gone, for idle or busy (1 s requests) members."""
    from autoscaler.virt import ops

    seconds: list[float] = []
    async with world(workdir, 2, rounds + 1, 0, 0.2) as w:
        target, group = w.target, w.group
        gw = target.gateway(target.hosts[0])
        await target.scale_out(group, 1)  # a member that stays, so the load always has somewhere to go
        for _ in range(rounds):
            [name] = (await target.scale_out(group, 1)).done
            await until(lambda: _ready_count(target) == 2)
            load = None
            if busy:
                load = Load(f"http://127.0.0.1:{w.front}/?s=1", workers=4, cap=16, seconds=4.0)
                runner = asyncio.create_task(load.run())
                await asyncio.sleep(0.5)
            started = time.monotonic()
            await target.scale_in(group, [name])

            async def gone(n: str = name) -> bool:
                return n not in {v.name for v in await gw.run(ops.list_domains, op="list")}

            await until(gone)
            seconds.append(time.monotonic() - started)
            if load is not None:
                await runner
    return seconds


async def _fill(target: kvm.KvmTarget, size: int) -> None:
    """Refill rounds until the pool holds `size` paused domains."""
    for _ in range(100):
        await target.fill_pools()
        pooled = target._cache.pooled("web")
        if len(pooled) >= size and all(r.run == "paused" for r in pooled):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the warm pool did not fill")


def _served(addresses: Addresses, uuid: str) -> bool:
    member = addresses.by_uuid.get(uuid)
    return member is not None and member.first_at is not None


def _ready_count(target: kvm.KvmTarget) -> int:
    return sum(1 for r in target._cache.members("web") if r.owner.phase.value == "active")


async def ramp(workdir: pathlib.Path) -> tuple[int, int]:
    """Requests ok and failed while the group goes 1 -> 4 -> 1 under load (0.1 s requests)."""
    async with world(workdir, 3, 8, 0, 0.2) as w:
        target, group = w.target, w.group
        await target.scale_out(group, 1)
        await until(lambda: _ready_count(target) == 1)
        load = Load(f"http://127.0.0.1:{w.front}/?s=0.1", workers=8, cap=5000, seconds=14.0)
        runner = asyncio.create_task(load.run())
        for size in (2, 3, 4, 3, 2, 1):
            names = [r.name for r in sorted(target._cache.members("web"), key=lambda r: r.owner.created)]
            active = [n for n in names if target._cache.find("web", n).owner.phase.value != "draining"]  # type: ignore[union-attr]
            if size > len(active):
                await target.scale_out(group, size - len(active))
            else:
                await target.scale_in(group, active[size:])
            await asyncio.sleep(2.0)
        await runner
    return load.ok, load.failed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def main(clones: int, rounds: int) -> None:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = pathlib.Path(tmp)
        results: dict[str, list[float]] = {}
        for label, pooled, inter in (("cold clone", False, 0.2), ("warm pool (paused)", True, 0.2)):
            work = root / label.replace(" ", "-").replace("(", "").replace(")", "")
            work.mkdir()
            results[label] = await first_served(work, clones, pooled, inter)
        table = Table(
            title=f"Clone request -> first request served ({clones} clones each, check inter 200ms rise 2)"
        )
        for column in ("path", "p50 s", "p90 s", "max s", "ratio p50"):
            table.add_column(column, justify="right")
        base = statistics.median(results["cold clone"])
        for label, values in results.items():
            p50 = statistics.median(values)
            table.add_row(
                label, f"{p50:.2f}", f"{pct(values, 0.9):.2f}", f"{max(values):.2f}", f"{p50 / base:.2f}"
            )
        console.print(table)

        drains: dict[str, list[float]] = {}
        for label, busy in (("idle member", False), ("busy member (1 s requests)", True)):
            work = root / ("drain-busy" if busy else "drain-idle")
            work.mkdir()
            drains[label] = await scale_in_times(work, busy, rounds)
        table = Table(
            title=f"Scale-in call -> domain gone ({rounds} rounds each; test driver: no guest shutdown time)"
        )
        for column in ("member", "p50 s", "max s"):
            table.add_column(column, justify="right")
        for label, values in drains.items():
            table.add_row(label, f"{statistics.median(values):.2f}", f"{max(values):.2f}")
        console.print(table)

        work = root / "ramp"
        work.mkdir()
        ok, failed = await ramp(work)
        table = Table(title="Ramp 1 -> 4 -> 1 under load (8 clients, 0.1 s requests, 14 s)")
        for column in ("requests ok", "failed"):
            table.add_column(column, justify="right")
        table.add_row(str(ok), str(failed))
        console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clones", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.clones, args.rounds))
